"""Projected L-BFGS on the pixels in [0,1], kept where the model runs."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from batch_style.engine import chunked
from batch_style.engine.objective import losses_of

# Correction pairs L-BFGS keeps (SciPy's default is 10): up to L_BFGS_HISTORY as long as they fit
# in L_BFGS_MEMORY_BYTES, never fewer than L_BFGS_MIN_HISTORY. Steps to reach the seed's final
# objective (tubingen + starry-night, 256 px, float32): 5 pairs: not by step 450, 20: 428,
# 100: 352; 200 and 400 were a few steps ahead of 100 at step 325-350, for 2-4x the memory.
# golden_gate + kandinsky, to 4.166e9: 20 pairs 287 steps, 100: 251 (docs/benchmarks.md). The
# objective's slow tail is where the longer memory pays.
L_BFGS_HISTORY = 100
L_BFGS_MIN_HISTORY = 20
L_BFGS_MEMORY_BYTES = 1 << 30
# L-BFGS's initial inverse Hessian γ·I: γ = L_BFGS_H0_SCALE · s·y / y·y of the newest pair. With
# the textbook scale 1 every unit step passed the Armijo test, and the slope at the new point was
# still ~0.24 of the slope at the old one (median, tubingen + starry-night, 256 px): each step
# stopped short of the minimum along its line. Steps to reach the seed's final objective at 256 px
# (float32, 100 pairs), scale 1 → 1.5: tubingen + starry-night 379 → 356, golden_gate + kandinsky
# 251 → 227, tubingen + kandinsky 229 → 209. 2.5: 369 on the first; 2.0 was behind 1.5 on the
# second; s·s / s·y (the longer Barzilai-Borwein step) and ‖s‖/‖y‖ lost ground from the start.
L_BFGS_H0_SCALE = 1.5
FIRST_STEP = 0.05  # L-BFGS's first step (and any after a reset) moves no pixel further than this
ARMIJO = 1e-4  # sufficient decrease: accept a step that gains this share of what the slope predicts


def lbfgs_trial(loss_and_grad, x, grad, direction, step, *objective_args):
    """The objective at the projected point clip(x + step·direction), and the change in the
    objective that the gradient at x predicts for it (the Armijo test's slope term)."""
    trial = tf.clip_by_value(x + step * direction, 0.0, 1.0)
    total, terms, trial_grad = loss_and_grad(trial, *objective_args)
    return trial, total, terms, trial_grad, tf.reduce_sum(grad * (trial - x))


class _Memory(NamedTuple):
    """L-BFGS's curvature pairs: the vectors s and y live in a variable `pairs` beside this
    (S in rows 0…m-1, Y in rows m…2m-1), each new pair written over the oldest (a ring: slot
    `newest` holds the newest), so a step never copies the memory. Their inner products are kept
    here by age, oldest first, up to date as pairs come and go (recomputing S·Yᵀ and Y·Yᵀ at
    every step would cost 4·m²·pixels FLOPs: 8% of a step at m = 100, 256 px)."""

    sy: tf.Tensor      # (m, m): sy[i, j] = s_i·y_j, by age (the last row is the newest pair)
    yy: tf.Tensor      # (m, m): yy[i, j] = y_i·y_j
    count: tf.Tensor   # pairs in use, the newest; 0: steepest descent
    newest: tf.Tensor  # the slot of the newest pair in `pairs`


def _lbfgs_memory(rows: int, n_pixels: int) -> tuple[_Memory, tf.Variable]:
    """An empty memory of `rows` pairs and the variable that holds its vectors."""
    products = tf.zeros((rows, rows))
    return (_Memory(products, products, tf.constant(0), tf.constant(rows - 1)),
            tf.Variable(tf.zeros((2 * rows, n_pixels)), trainable=False))


def history_rows(n_pixels: int, memory_bytes: int | None = None) -> int:
    """Correction pairs L-BFGS keeps for an image of `n_pixels` values (H·W·3): up to
    L_BFGS_HISTORY within L_BFGS_MEMORY_BYTES, never fewer than L_BFGS_MIN_HISTORY, unless a
    memory budget says fewer (`memory_bytes`, the most the pairs may take; at least one pair)."""
    pair = 2 * 4 * n_pixels  # s and y in float32
    rows = min(L_BFGS_HISTORY, max(L_BFGS_MIN_HISTORY, L_BFGS_MEMORY_BYTES // pair))
    return int(rows if memory_bytes is None else max(1, min(rows, memory_bytes // pair)))


@tf.function
def _lbfgs_direction(x, grad, memory: _Memory, pairs: tf.Variable, s=None, y=None):
    """-H·g over the free pixels, H the L-BFGS inverse Hessian in compact form; first, given
    the last step s and its change of gradient y, the memory takes that pair in.

    H is built from the memory's newest `count` pairs in compact form (Byrd, Nocedal & Schnabel
    1994, as in Nocedal & Wright eq. 7.24: a handful of (m×n)·n products instead of the two-loop
    recursion's 4m vector passes). The memory is read twice: once for the products of every
    stored s and y with g and with the new pair (one matrix product), once for the direction.
    (Separate products and a memory shifted by copying took 67 ms a step at 256 px, m = 100, 9%
    of a Winograd step; docs/benchmarks.md.) Pixels held at a bound by a gradient pointing out of
    [0,1] are fixed for this step. Returns the direction, its largest pixel move and the memory,
    its count set to 0 when it gave no descent direction and was dropped for steepest descent.

    A pair with s·y ≤ 0 is left out: it would make H indefinite (the curvature condition, which
    Armijo steps do not ensure). The test is on the cosine of s and y, free of the objective's
    scale: at 96 px with the default weights y·y / s·y is ~1e10, and a test of s·y against
    1e-10·y·y threw away every pair after the second one.
    """
    shape = tf.shape(x)
    g = tf.reshape(grad, (1, -1))
    at_bound = ((x <= 0.0) & (grad > 0.0)) | ((x >= 1.0) & (grad < 0.0))
    free = tf.reshape(tf.cast(~at_bound, tf.float32), (1, -1))
    q = g * free
    rows = memory.sy.shape[0]
    vectors = [q] if s is None else [q, tf.reshape(s, (1, -1)), tf.reshape(y, (1, -1))]
    # (2, m, k): S·v and Y·v for each vector v, by age. The memory is read without a copy:
    # after its first row update a variable is otherwise copied on every read (TensorFlow's
    # copy-on-read mode for sparsely updated variables: 75 ms a read here). The update below
    # waits for this product, so the read sees the memory as it was.
    unordered = tf.matmul(pairs.read_value_no_copy(), tf.concat(vectors, 0), transpose_b=True)
    products = tf.roll(tf.reshape(unordered, (2, rows, len(vectors))), -(memory.newest + 1),
                       axis=1)
    p_s, p_y = products[0, :, :1], products[1, :, :1]  # S·q, Y·q (m, 1)
    if s is not None:
        s, y = vectors[1], vectors[2]
        s_y = tf.reduce_sum(s * y)
        if s_y > 1e-6 * tf.norm(s) * tf.norm(y):
            slot = (memory.newest + 1) % rows  # the oldest pair's
            with tf.control_dependencies([unordered]):
                pairs.scatter_update(tf.IndexedSlices(tf.concat([s, y], 0),
                                                      tf.stack([slot, rows + slot])))
            # The products with the new memory: the oldest pair's dropped, the new one's last.
            new_row = tf.concat([products[1, 1:, 1], [s_y]], 0)[None, :]     # s·y_j
            new_column = tf.concat([products[0, 1:, 2], [s_y]], 0)[:, None]  # s_i·y
            y_row = tf.concat([products[1, 1:, 2], [tf.reduce_sum(y * y)]], 0)[None, :]
            memory = _Memory(
                tf.concat([tf.concat([memory.sy[1:, 1:], new_column[:-1]], 1), new_row], 0),
                tf.concat([tf.concat([memory.yy[1:, 1:], tf.transpose(y_row[:, :-1])], 1),
                           y_row], 0),
                tf.minimum(memory.count + 1, rows), slot)
            p_s = tf.concat([p_s[1:], [[tf.reduce_sum(s * q)]]], 0)
            p_y = tf.concat([p_y[1:], [[tf.reduce_sum(y * q)]]], 0)
    count = memory.count
    active = tf.cast(tf.range(rows) >= rows - count, tf.float32)  # by age
    mask = active[:, None] * active[None, :]  # rows not in use are masked out
    sy, yy = memory.sy * mask, memory.yy * mask
    d = tf.linalg.diag_part(sy)
    gamma = tf.where(count > 0, L_BFGS_H0_SCALE * d[-1] / tf.maximum(yy[-1, -1], 1e-30), 1.0)
    r = tf.linalg.band_part(sy, 0, -1) + tf.linalg.diag(1.0 - active)  # unused rows: identity
    p_s = p_s * active[:, None]
    p_y = gamma * p_y * active[:, None]
    r_inv_p_s = tf.linalg.triangular_solve(r, p_s, lower=False)
    a = tf.linalg.triangular_solve(
        r, d[:, None] * r_inv_p_s + gamma * tf.matmul(yy, r_inv_p_s) - p_y, lower=False,
        adjoint=True)  # rows not in use are 0 in both solutions: r is the identity there
    # H·q = γ·q + Sᵀ·a − γ·Yᵀ·R⁻¹·p_s: the coefficients back in slot order, one product.
    coefficients = tf.roll(tf.stack([a, -gamma * r_inv_p_s]), memory.newest + 1, axis=1)
    hq = gamma * q + tf.matmul(tf.reshape(coefficients, (2 * rows, 1)),
                               pairs.read_value_no_copy(), transpose_a=True)
    direction = -hq * free
    if tf.reduce_sum(g * direction) >= 0.0:
        count = tf.zeros_like(count)
        direction = -q
    return (tf.reshape(direction, shape), tf.reduce_max(tf.abs(direction)),
            memory._replace(count=count))


class _State(NamedTuple):
    """L-BFGS between two evaluations, kept on the device across a chunk (chunked.py)."""

    x: tf.Tensor          # the accepted point, its gradient and objective (float64, as read)
    g: tf.Tensor
    f: tf.Tensor
    direction: tf.Tensor
    largest: tf.Tensor    # the direction's largest pixel move
    memory: _Memory
    step: tf.Tensor       # the next trial's step length (float64, as the Python loop keeps it)
    n: tf.Tensor          # evaluations done at this level
    done: tf.Tensor       # the phase is over: converged, out of budget, or nothing to gain
    converged: tf.Tensor
    best: tuple           # (total, terms, point) of the lowest reading of this precision
    tolerance: chunked.Tolerance
    point: tf.Tensor      # the last point evaluated (a snapshot's image)


def _first_step(count, largest):
    """A direction's first trial step: 1, or FIRST_STEP's worth of pixel move without pairs."""
    one = tf.constant(1.0, tf.float64)
    largest = tf.maximum(tf.cast(largest, tf.float64), 1e-12)
    return tf.where(count > 0, one, tf.minimum(one, FIRST_STEP / largest))


def lbfgs_chunk(loss_and_grad, state: _State, end, limit, tolerance, pairs, *objective_args):
    """Up to `limit` evaluations of run_lbfgs's loop (the same tests, in the same order and
    precision), stopping where it would; returns the state and each evaluation's total and
    terms. Traced whole by Objective.traced: one call, no host round trip per step."""
    # Inlined: a nested call of the tf.function with the memory's variable finds the function
    # traced for an earlier run's variable, since deleted.
    new_direction = _lbfgs_direction.python_function
    totals = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
    terms_all = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
    (x, g, f, direction, largest, memory, step, n, done, converged, best, rule,
     point) = state
    k = tf.constant(0)
    while tf.logical_and(tf.logical_not(done), k < limit):
        point, total, terms, point_g, predicted = lbfgs_trial(
            loss_and_grad, x, g, direction, tf.cast(step, tf.float32), *objective_args)
        totals, terms_all = totals.write(k, total), terms_all.write(k, terms)
        k, n = k + 1, n + 1
        if total < best[0]:
            best = (total, terms, point)
        converged, rule = rule.read(total, tolerance)
        total64, predicted = tf.cast(total, tf.float64), tf.cast(predicted, tf.float64)
        if total64 <= f + ARMIJO * predicted:
            s, y = point - x, point_g - g
            x, g, f = point, point_g, total64
            if converged:
                done = tf.constant(True)
            else:
                direction, largest, memory = new_direction(x, g, memory, pairs, s, y)
                step = _first_step(memory.count, largest)
                done = n >= end
        elif tf.logical_or(converged, n >= end):
            done = tf.constant(True)
        else:
            curvature = total64 - f - predicted
            guess = tf.where(curvature > 0, -predicted * step / (2 * curvature),
                             tf.constant(0.0, tf.float64))
            step = tf.minimum(tf.maximum(guess, 0.1 * step), 0.5 * step)
            if step * tf.cast(largest, tf.float64) < 1e-7:  # no pixel would move > 1e-7
                if memory.count > 0:  # the memory's direction failed: steepest descent
                    direction, largest, memory = new_direction(
                        x, g, memory._replace(count=tf.constant(0)), pairs)
                    step = _first_step(memory.count, largest)
                else:
                    done = tf.constant(True)
    state = _State(x, g, f, direction, largest, memory, step, n, done, converged, best, rule,
                   point)
    return state, totals.stack(), terms_all.stack()


def run_lbfgs(image, settings, schedule, report, *, memory_bytes: int | None = None):
    """L-BFGS (Gatys et al.'s choice) with box bounds [0,1], kept where the model runs; its
    pairs take at most `memory_bytes` (history_rows).

    Projected L-BFGS: pixels at a bound whose gradient points outward stay put, the step is
    projected onto [0,1], and a backtracking line search (Armijo, quadratic interpolation)
    picks its length. The optimizer's state (image, gradient, curvature memory) stays on the
    device; each phase's first evaluation is read by Python, the rest run in chunks of many
    evaluations to a traced call (lbfgs_chunk, chunked.py), or one call each without them.
    Measured as good per evaluation as SciPy's L-BFGS-B, whose host-side work grows as
    m²·pixels (docs/benchmarks.md). A step is one
    objective evaluation, line searches included, so step budgets cost the same for Adam.

    With several phases (precision "mixed") the curvature memory carries over: a new phase
    reads the current image in its precision (a step) and goes on from there, with the steps a
    phase before it left unused (it converged, or its line search could not gain anything even
    along the steepest descent, which bfloat16 noise can do). Returns (image, its losses, steps
    done, whether the last phase converged before its budget).
    """
    x = tf.constant(image[None], tf.float32)
    n_pixels = int(np.prod(x.shape))
    memory, pairs = _lbfgs_memory(history_rows(n_pixels, memory_bytes), n_pixels)
    zero = tf.zeros_like(x)
    n, best, converged, carry = 0, (math.inf, None, x), False, 0
    clock = chunked.Clock()

    def record(total, terms, point) -> bool:
        """One evaluation: count it, keep the best, report; True when the phase converged."""
        nonlocal n, best
        n += 1
        losses_now = losses_of(total, terms)
        if losses_now.total < best[0]:
            best = (losses_now.total, losses_now, point)
        return report.step(losses_now, lambda: point.numpy()[0])

    for i, (objective, steps, objective_args) in enumerate(schedule):
        if report.halted:  # the look rule ended the level (reporter.py)
            break
        if steps + carry <= 0:
            continue
        trial = objective.traced(lbfgs_trial)
        end = n + steps + carry
        if i:
            report.new_phase()
            best = (math.inf, None, x)  # readings in another precision are not comparable
        _, f, terms, g, _ = trial(x, zero, zero, tf.constant(0.0), *objective_args)  # read x
        converged = record(f, terms, x)
        f = float(f)
        direction, largest, memory = _lbfgs_direction(x, g, memory, pairs)
        if chunked.used_for(objective):
            state = _State(x, g, tf.constant(f, tf.float64), direction, largest, memory,
                           _first_step(memory.count, largest), tf.constant(n),
                           tf.constant(n >= end or converged), tf.constant(converged),
                           (tf.constant(best[0], tf.float32), tf.constant(
                               [best[1].content, best[1].style, best[1].tv, best[1].temporal],
                               tf.float32), best[2]),
                           chunked.Tolerance.of(report), x)
            state, n, _ = chunked.run(objective.traced(lbfgs_chunk), report, clock, n, end, state,
                                   lambda s: s.point.numpy()[0],
                                   tf.constant(report.settings.tolerance, tf.float64), pairs,
                                   *objective_args)
            x, g, memory, converged = state.x, state.g, state.memory, bool(state.converged)
            total, terms, point = state.best
            best = (float(total), losses_of(total, terms), point)
            carry = max(end - n, 0)
            continue
        while n < end and not converged:
            step = 1.0 if int(memory.count) else min(1.0, FIRST_STEP / max(float(largest), 1e-12))
            accepted = False
            while n < end:
                point, total, terms, point_g, predicted = trial(
                    x, g, direction, tf.constant(step, tf.float32), *objective_args)
                converged = record(total, terms, point)
                total, predicted = float(total), float(predicted)  # one read from the device
                if total <= f + ARMIJO * predicted:
                    accepted = True
                    break
                if converged:
                    break
                curvature = total - f - predicted
                guess = -predicted * step / (2 * curvature) if curvature > 0 else 0.0
                step = min(max(guess, 0.1 * step), 0.5 * step)
                if step * float(largest) < 1e-7:  # no pixel would move more than 1e-7
                    break
            if not accepted:
                if converged or n >= end or not int(memory.count):
                    break  # done, out of budget, or even steepest descent gains nothing here
                # The memory's direction failed: try steepest descent.
                direction, largest, memory = _lbfgs_direction(
                    x, g, memory._replace(count=tf.constant(0)), pairs)
                continue
            s, y = point - x, point_g - g
            x, g, f = point, point_g, total
            if not converged:
                direction, largest, memory = _lbfgs_direction(x, g, memory, pairs, s, y)
        carry = max(end - n, 0)
    # The best point read in the last precision: a line search may have ended on a worse one.
    return best[2].numpy()[0], best[1], n, converged
