#!/usr/bin/env python3
"""The same DQN on CartPole-v1 with Stable-Baselines3 on PyTorch CPU, for wall-time and return
comparisons with examples/dqn_cartpole.c.

The hyper-parameters are rl-zoo's tuned CartPole-v1 DQN (hyperparams/dqn.yml): lr 2.3e-3,
batch 64, buffer 100000, learning_starts 1000, gamma 0.99, target_update_interval 10,
train_freq 256, gradient_steps 128, exploration_fraction 0.16, exploration_final_eps 0.04,
net_arch [256, 256], 5e4 steps; everything else SB3's DQN defaults (Adam, Huber loss, tau 1,
max_grad_norm 10), which clg_dqn_defaults() mirrors.

Needs: pip install stable-baselines3 gymnasium (not a clgrad dependency).
Usage: tools/dqn_sb3.py [--seed N] [--steps N] [--threads N] [--eval-episodes N]
Prints the training wall time and `evaluation mean return N.N over N episodes after N steps`.
"""
import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--eval-episodes", type=int, default=100)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    env = gym.make("CartPole-v1")
    model = DQN("MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=100000,
                learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
                gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04,
                policy_kwargs=dict(net_arch=[256, 256]), seed=args.seed, device="cpu",
                verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=args.steps)
    train_s = time.perf_counter() - t0
    print(f"sb3 {args.steps} steps in {train_s:.1f} s ({torch.get_num_threads()} torch threads)")
    eval_env = gym.make("CartPole-v1")
    returns = []
    for e in range(args.eval_episodes):
        obs, _ = eval_env.reset(seed=args.seed + 1000003 + e)
        done, ret = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = eval_env.step(int(action))
            ret += r
            done = term or trunc
        returns.append(ret)
    print(f"evaluation return std {np.std(returns):.1f}")
    print(f"evaluation mean return {np.mean(returns):.1f} over {args.eval_episodes} episodes "
          f"after {args.steps} steps")


if __name__ == "__main__":
    main()
