#!/usr/bin/env python3
"""CartPole-v1 environment steps per second: clgrad's device batch and host loop (bench-envs)
next to Gymnasium's SyncVectorEnv, in one run.

Usage: tools/bench-envs.py [--bench build/tools/bench-envs] [N ...]   (default N: 1 64 1024)
Needs gymnasium (pip install gymnasium; not a clgrad dependency).
"""
import argparse
import subprocess
import time

import gymnasium as gym
import numpy as np

MIN_SECONDS = 1.0


def gym_rate(n):
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(n)])
    envs.reset(seed=1)
    rng = np.random.default_rng(1)
    for _ in range(5):
        envs.step(rng.integers(0, 2, size=n))
    steps, t0 = 0, time.perf_counter()
    while True:
        for _ in range(8):
            envs.step(rng.integers(0, 2, size=n))  # autoreset, as the device batch does
            steps += n
        t = time.perf_counter() - t0
        if t >= MIN_SECONDS:
            break
    envs.close()
    return steps / t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build/tools/bench-envs")
    ap.add_argument("n", nargs="*", type=int, default=[1, 64, 1024])
    args = ap.parse_args()
    out = subprocess.run([args.bench] + [str(n) for n in args.n], check=True,
                         capture_output=True, text=True).stdout
    lines = out.strip().splitlines()
    print(lines[0])
    print(f"{lines[1]} {'gymnasium sync/s':>17}")
    for n, line in zip(args.n, lines[2:]):
        print(f"{line} {gym_rate(n):17.0f}")


if __name__ == "__main__":
    main()
