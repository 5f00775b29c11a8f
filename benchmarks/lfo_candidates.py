"""Timing of the leave-future-out comparison of every candidate default (no assertions).

Run with ``python benchmarks/lfo_candidates.py [SPEC ...]`` (default:
``lmsbayes.future.FUTURE_SPECS``). Prints the comparison (docs/validation.md section 6)
and the wall and CPU time, in all and per spec. Measured 2026-12-07 on 2 cores shared at
load ~20: 363 s wall, 70 s CPU for the seven specs (regimen 97 s and student_t 149 s wall
of it: the regimen effects' per-group quadrature and the Student-t scale mixture).
2026-12-08, eight specs (era added) through ``lmsbayes validate --future`` at load 13-21:
533 s wall, 108 s CPU (era 17 s wall).
"""

from __future__ import annotations

import sys
import time

from lmsbayes.future import FUTURE_SPECS, compare_future


def main(specs: list[str]) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    fc = compare_future(specs, progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(fc.format())
    print(
        f"\nwall {time.perf_counter() - t0:.1f} s, CPU {time.process_time() - c0:.1f} s; "
        + ", ".join(f"{n} {v.seconds:.1f} s" for n, v in fc.validations.items())
    )


if __name__ == "__main__":
    main(sys.argv[1:] or list(FUTURE_SPECS))
