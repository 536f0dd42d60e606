"""Password check cost: one argon2id verification with the parameters in force.

Prints the parameters and the median, min and max of N checks of a right password (and
of an unknown user's dummy check, which must cost the same). Goal: about 50 ms per check
on a 2-core host, so that a guessing attacker pays for every try while a sign-in stays
quick. ``sso.argon2_time_cost``, ``sso.argon2_memory_kib`` and ``sso.argon2_parallelism``
in the profile change the parameters.

Usage: python bench/password_check.py [--runs 21]
"""

from __future__ import annotations

import argparse
import statistics
import time

from mno.sso import passwords


def _ms(fn: object, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    p = passwords.params()
    stored = passwords.hasher().hash("correct horse battery staple")
    right = _ms(lambda: passwords.verify_hash(stored, "correct horse battery staple"), args.runs)
    dummy = _ms(lambda: passwords.verify_hash(None, "correct horse battery staple"), args.runs)
    print(f"argon2id time_cost={p.time_cost} memory={p.memory_kib} KiB parallelism={p.parallelism}")
    for label, samples in (("right password", right), ("unknown user (dummy)", dummy)):
        print(
            f"{label:>22}: median {statistics.median(samples):6.1f} ms"
            f"  min {min(samples):6.1f}  max {max(samples):6.1f}  ({len(samples)} checks)"
        )


if __name__ == "__main__":
    main()
