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

    The trick: after a regular row, the rows that follow it one cadence apart
    (nearly all of them in a gap-free stretch) form a run whose slots are
    consecutive, found by comparing neighbouring timestamps (no division) and
    copied as one slice; the division ``step // cadence`` is paid only at the
    first row of a run (after a gap).  The kernel reads 16 bytes and writes 8
    per row, so it runs at memory speed.
    """
    n = times.shape[0]
    end = base + buf.shape[0]
    i = i0
    while i < n:
        step = times[i] - prev_t
        if step == cadence:
            slot = prev_slot + 1
        elif step > 0 and step % cadence == 0:
            slot = prev_slot + step // cadence
        else:
            break
        if slot <= max_slot or slot >= end:
            break
        limit = min(n, i + end - slot)  # rows of the run that still fit in buf
        j = i + 1
        while j < limit and times[j] - times[j - 1] == cadence:
            j += 1
        k = slot - base
        buf[k : k + j - i] = values[i:j]
        prev_slot = slot + j - i - 1
        max_slot = prev_slot
        prev_t = times[j - 1]
        i = j
    return i, prev_slot
