#!/usr/bin/env python3
"""Record CartPole-v1 trajectories from Gymnasium for tests/test-rl-envs.c.

Twenty episodes of gym.make("CartPole-v1") (the TimeLimit wrapper at 500 steps included), each
from a recorded initial state (Gymnasium's own reset for a seed, or one set by hand near a
limit) under a fixed action sequence that a simple policy chose while the episode ran: seeded
random actions, a constant push, "push the way the pole falls" (which balances until the time
limit), and the same with a bias that holds the pole tilted so the cart runs off the track.
Between them the episodes end by |theta| > 12 degrees, by |x| > 2.4 and by truncation at 500.

The fixture keeps the float64 state after every step (Gymnasium's float32 observation is that
state rounded, which the script asserts). The C test sets each initial state with
clg_cartpole_set_state, replays the actions and compares every observation (to 1e-6), reward
and terminated/truncated flag, and the step at which the episode ends; and it restarts every
step from the recorded state before it, which checks each step's arithmetic (to 1e-12) apart
from the open-loop replay's amplification of rounding.

Run (needs Gymnasium, never needed by the library or CI):
    python3 -m venv /tmp/gymvenv
    /tmp/gymvenv/bin/pip install gymnasium numpy
    /tmp/gymvenv/bin/python tools/make_cartpole_fixture.py
It writes tests/fixtures/cartpole_gymnasium.h (--out PATH writes elsewhere).
"""

import argparse
import math
import os
import sys

import gymnasium as gym
import numpy as np

X_LIMIT = 2.4
THETA_LIMIT = 12 * 2 * math.pi / 360


def lean(bias):
    """Push the way the pole falls (angle plus a little of its velocity), around `bias` rad."""
    return lambda s, rng: int(s[2] - bias + 0.5 * s[3] > 0)


def random_actions(s, rng):
    return int(rng.integers(2))


def noisy_lean(s, rng):
    return random_actions(s, rng) if rng.random() < 0.25 else lean(0.0)(s, rng)


# (policy name, policy, reset seed or None, initial state set by hand or None)
EPISODES = [
    ("random", random_actions, 11, None),
    ("random", random_actions, 12, None),
    ("random", random_actions, 13, None),
    ("random", random_actions, 14, None),
    ("random", random_actions, 15, None),
    ("random", random_actions, 16, None),
    ("random", random_actions, 17, None),
    ("random", random_actions, 18, None),
    ("right", lambda s, rng: 1, 21, None),
    ("left", lambda s, rng: 0, 22, None),
    ("lean+0.06", lean(0.06), 31, None),
    ("lean-0.06", lean(-0.06), 32, None),
    ("lean+0.1", lean(0.1), 33, None),
    ("lean-0.1", lean(-0.1), 34, None),
    ("lean", lean(0.0), 41, None),
    ("noisy-lean", noisy_lean, 42, None),
    ("random", random_actions, None, (2.35, 1.5, 0.0, 0.0)),
    ("random", random_actions, None, (-2.39, -0.6, 0.01, 0.0)),
    ("left", lambda s, rng: 0, None, (0.0, 0.0, 0.2, 0.5)),
    ("right", lambda s, rng: 1, None, (0.0, 0.0, -0.15, -1.0)),
]


def record(index, name, policy, seed, state):
    env = gym.make("CartPole-v1")
    env.reset(seed=seed if seed is not None else 1000 + index)
    if state is not None:
        env.unwrapped.state = np.array(state, dtype=np.float64)
    init = [float(v) for v in env.unwrapped.state]
    rng = np.random.default_rng(7000 + index)
    actions, obs, rewards, flags = [], [], [], []
    while True:
        a = policy(env.unwrapped.state, rng)
        o, r, terminated, truncated, _ = env.step(a)
        state = env.unwrapped.state
        # the observation is the float64 state rounded to float32: the fixture keeps the state
        assert o.dtype == np.float32 and state.dtype == np.float64
        assert np.array_equal(o, state.astype(np.float32))
        actions.append(a)
        obs.extend(float(v) for v in state)
        rewards.append(float(r))
        flags.append(int(terminated) | int(truncated) << 1)
        if terminated or truncated:
            break
    x, theta = env.unwrapped.state[0], env.unwrapped.state[2]
    end = "truncated" if flags[-1] == 2 else "both" if flags[-1] == 3 else (
        "x" if abs(x) > X_LIMIT else "theta")
    if end == "x" and abs(theta) > THETA_LIMIT:
        end = "x+theta"
    env.close()
    return dict(name=name, init=init, actions=actions, obs=obs, rewards=rewards, flags=flags,
                end=end)


def c_array(ctype, name, values, fmt, per_line):
    lines = [f"static const {ctype} {name}[{len(values)}] = {{"]
    for i in range(0, len(values), per_line):
        lines.append("    " + ", ".join(fmt(v) for v in values[i:i + per_line]) + ",")
    lines.append("};")
    return "\n".join(lines)


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "tests", "fixtures",
                                                  "cartpole_gymnasium.h"))
    args = ap.parse_args()

    eps = [record(i, *e) for i, e in enumerate(EPISODES)]
    ends = {}
    for e in eps:
        ends[e["end"]] = ends.get(e["end"], 0) + 1
    for need in ("x", "theta", "truncated"):
        if need not in ends:
            sys.exit(f"make_cartpole_fixture: no episode ends by {need}: {ends}")

    total = sum(len(e["actions"]) for e in eps)
    out = [
        f"/* Generated by tools/make_cartpole_fixture.py (Gymnasium {gym.__version__}, numpy "
        f"{np.__version__}); do not edit.",
        " * CartPole-v1 episodes: initial state, actions, and per step the state (float64; the",
        " * observation Gymnasium returned is it rounded to float32), the reward and the flags",
        " * (1 terminated, 2 truncated).",
        " * Episodes end: " + ", ".join(f"{k} {v}" for k, v in sorted(ends.items())) + ". */",
        "#ifndef CLG_TEST_CARTPOLE_GYMNASIUM_H",
        "#define CLG_TEST_CARTPOLE_GYMNASIUM_H",
        "",
        f"#define CARTPOLE_EPISODES {len(eps)}",
        f"#define CARTPOLE_STEPS {total}",
        "",
        "typedef struct cartpole_episode {",
        "    const char *policy;",
        "    const char *end; /* theta, x, truncated */",
        "    double init[4];  /* x, x_dot, theta, theta_dot */",
        "    int first;       /* index of its first step in the arrays below */",
        "    int steps;",
        "} cartpole_episode;",
        "",
        "static const cartpole_episode cartpole_episodes[CARTPOLE_EPISODES] = {",
    ]
    first = 0
    for e in eps:
        init = ", ".join(repr(v) for v in e["init"])
        out.append(f'    {{"{e["name"]}", "{e["end"]}", {{{init}}}, {first}, '
                   f'{len(e["actions"])}}},')
        first += len(e["actions"])
    out.append("};")
    out.append("")
    all_actions = [a for e in eps for a in e["actions"]]
    all_flags = [f for e in eps for f in e["flags"]]
    all_rewards = [r for e in eps for r in e["rewards"]]
    all_obs = [v for e in eps for v in e["obs"]]
    out.append(c_array("unsigned char", "cartpole_actions", all_actions, str, 40))
    out.append("")
    out.append(c_array("unsigned char", "cartpole_flags", all_flags, str, 40))
    out.append("")
    out.append(c_array("float", "cartpole_rewards", all_rewards, lambda v: f"{v:.1f}f", 20))
    out.append("")
    out.append("/* (CARTPOLE_STEPS, 4): the state after each step; the observation is it as float"
               " */")
    out.append(c_array("double", "cartpole_states", all_obs, repr, 4))
    out.append("")
    out.append("#endif")
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(out) + "\n")
    for i, e in enumerate(eps):
        print(f"episode {i:2d} {e['name']:<11} {len(e['actions']):3d} steps, ends: {e['end']}")
    print(f"wrote {args.out}: {len(eps)} episodes, {total} steps")


if __name__ == "__main__":
    main()
