"""Check a numpy hypergradient against a bilevel golden file, replay the TTSA noise tape, and write THEIRS.json.

Usage:  python3 docs/examples/check_hypergradient.py [GOLDEN.json] [THEIRS.json]
Then:   bilevel check GOLDEN.json THEIRS.json

Everything below is computed from the instance written out in the golden file; nothing comes from the crate.
"""
import json
import sys

import numpy as np

golden_path = sys.argv[1] if len(sys.argv) > 1 else "tests/golden/quadratic_3x5.json"
theirs_path = sys.argv[2] if len(sys.argv) > 2 else "theirs.json"
g = json.load(open(golden_path))
assert g["schema"] == "bilevel-golden" and g["schema_version"] in (1, 2), "unknown schema"

inst = g["instance"]
H, M, P, N, Q = (np.array(inst[k]) for k in ("H", "M", "P", "N", "Q"))
b_l, p_u, q_u = (np.array(inst[k]) for k in ("b_l", "p_u", "q_u"))
c_u = inst["c_u"]


# Oracles of the quadratic instance (docs/golden-format.md, "Instance").
def grad_theta_fu(t, f): return P @ t + N @ f + p_u
def grad_phi_fu(t, f): return N.T @ t + Q @ f + q_u
def grad_phi_fl(t, f): return H @ f + M.T @ t + b_l
def f_u(t, f): return 0.5 * t @ P @ t + t @ N @ f + 0.5 * f @ Q @ f + p_u @ t + q_u @ f + c_u


# My implementation of the implicit gradient, eqs (13)-(17).
def phi_star(t): return -np.linalg.solve(H, M.T @ t + b_l)
def jacobian(): return -np.linalg.solve(H, M.T)  # J = dphi*/dtheta, d_l x d_u
def hypergradient(t):
    f = phi_star(t)
    return grad_theta_fu(t, f) + jacobian().T @ grad_phi_fu(t, f)


def rel_err(mine, golden):
    """The checker's measure: max |mine - golden| / max(max |golden|, 1)."""
    mine, golden = np.asarray(mine), np.asarray(golden)
    return float(np.max(np.abs(mine - golden)) / max(np.max(np.abs(golden)), 1.0))


points = []
worst = 0.0
for pt in g["points"]:
    t, f = np.array(pt["theta"]), np.array(pt["phi"])
    # Outputs only: the inputs (theta, phi) are read from the golden file, not echoed.
    mine = {
        "f_u": f_u(t, f),
        "f_l": 0.5 * f @ H @ f + t @ M @ f + b_l @ f + inst["c_l"],
        "surrogate": (grad_theta_fu(t, f) - M @ np.linalg.solve(H, grad_phi_fu(t, f))).tolist(),
        "phi_star": phi_star(t).tolist(),
        "F": f_u(t, phi_star(t)),
        "grad_F": hypergradient(t).tolist(),
        "jacobian": jacobian().tolist(),
    }
    for key in ("phi_star", "F", "grad_F", "jacobian", "surrogate"):
        worst = max(worst, rel_err(mine[key], pt[key]))
    points.append(mine)
print(f"hypergradient: worst error over {len(points)} points = {worst:.2e} (tolerance 1e-10)")

# Replay the stochastic TTSA trajectory: the i-th oracle call returns exact + tape[i]["noise"].
s = g["stochastic"][0]
tape = iter(s["tape"])


def call(kind, exact):
    entry = next(tape)
    assert entry["kind"] == kind, (entry["kind"], kind)
    return exact + np.array(entry["noise"])


lo = hi = None
if inst["domain"]["kind"] == "box":
    lo, hi = np.array(inst["domain"]["lo"]), np.array(inst["domain"]["hi"])
theta, phi = np.array(s["theta"][0]), np.array(s["phi"][0])
thetas, phis = [theta], [phi]
for k in range(len(s["alpha"])):
    phi = phi - s["beta"][k] * call("grad_phi_fl", grad_phi_fl(theta, phi))
    g_theta = call("grad_theta_fu", grad_theta_fu(theta, phi))
    z = call("grad_phi_fu", grad_phi_fu(theta, phi))
    for _ in range(s["neumann_depths"][k]):
        z = z - s["neumann_eta"] * call("hvp_fl", H @ z)
    z = s["neumann_terms"][k] * s["neumann_eta"] * z
    h = g_theta - call("cross_fl", M @ z)
    theta = theta - s["alpha"][k] * h
    if lo is not None:
        theta = np.clip(theta, lo, hi)
    elif inst["domain"]["kind"] == "ball":
        c, r = np.array(inst["domain"]["center"]), inst["domain"]["radius"]
        d = np.linalg.norm(theta - c)
        theta = c + (theta - c) * (r / d) if d > r else theta
    thetas.append(theta)
    phis.append(phi)
replay = max(rel_err(a, b) for a, b in zip(thetas + phis, s["theta"] + s["phi"]))
print(f"TTSA replay: {len(s['alpha'])} iterations, {len(s['tape'])} tape entries, worst error = {replay:.2e} (tolerance 1e-8)")

theirs = {
    "schema": "bilevel-golden", "schema_version": 2, "instance_hash": g["instance_hash"],
    "points": points,
    "stochastic": [{"algorithm": "ttsa", "theta": [x.tolist() for x in thetas], "phi": [x.tolist() for x in phis]}],
}
json.dump(theirs, open(theirs_path, "w"))
print(f"wrote {theirs_path}; compare with: bilevel check {golden_path} {theirs_path}")
ok = worst <= 1e-10 and replay <= 1e-8
sys.exit(0 if ok else 1)
