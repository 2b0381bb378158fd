"""The numba kernel that places regular table rows on a time grid (``consumer.inputs``)."""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def place_rows(times, values, i0, prev_t, prev_slot, max_slot, cadence, base, buf):
    """Place regular rows from ``i0`` into ``buf`` (slots ``[base, base + len(buf))``).

    A row is regular when its step from the previous row is a positive multiple
    of ``cadence`` and its slot (``prev_slot + step // cadence``) is beyond
    ``max_slot`` (no row there yet).  Stops at the first row that is not, or
    whose slot falls beyond ``buf``; returns ``(i, prev_slot)``: the first row
    not placed and the slot of the last one placed.
    """
    n = times.shape[0]
    end = base + buf.shape[0]
    i = i0
    while i < n:
        step = times[i] - prev_t
        if step <= 0 or step % cadence != 0:
            break
        slot = prev_slot + step // cadence
        if slot <= max_slot or slot >= end:
            break
        buf[slot - base] = values[i]
        prev_t = times[i]
        prev_slot = slot
        max_slot = slot
        i += 1
    return i, prev_slot
