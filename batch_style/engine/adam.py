"""Adam as in the seed and the TensorFlow tutorial, on the pixels in [0,1]."""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from batch_style.engine import chunked
from batch_style.engine.objective import losses_of

# As in the seed and the TensorFlow tutorial: beta1 0.99, epsilon 0.1 on pixels in [0,1].
ADAM_BETA1 = 0.99
ADAM_BETA2 = 0.999
ADAM_EPSILON = 0.1


def adam_update(loss_and_grad, x, m, v, t, learning_rate, *objective_args):
    """One Adam step, Keras' formulation (epsilon outside the bias correction), then [0,1]."""
    total, terms, grad = loss_and_grad(x, *objective_args)
    m.assign(ADAM_BETA1 * m + (1 - ADAM_BETA1) * grad)
    v.assign(ADAM_BETA2 * v + (1 - ADAM_BETA2) * tf.square(grad))
    t = tf.cast(t, tf.float32)
    rate = learning_rate * tf.sqrt(1 - ADAM_BETA2 ** t) / (1 - ADAM_BETA1 ** t)
    x.assign(tf.clip_by_value(x - rate * m / (tf.sqrt(v) + ADAM_EPSILON), 0.0, 1.0))
    return total, terms


class _State(NamedTuple):
    """What a chunk of Adam steps carries besides the variables (chunked.py)."""

    n: tf.Tensor
    done: tf.Tensor
    converged: tf.Tensor
    tolerance: chunked.Tolerance


def adam_chunk(loss_and_grad, state: _State, end, limit, tolerance, x, m, v, learning_rate,
               *objective_args):
    """Up to `limit` of run_adam's steps in one traced call; the state and each step's total
    and terms."""
    totals = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
    terms_all = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
    n, done, converged, rule = state
    k = tf.constant(0)
    while tf.logical_and(tf.logical_not(done), k < limit):
        n = n + 1
        total, terms = adam_update(loss_and_grad, x, m, v, n, learning_rate, *objective_args)
        totals, terms_all = totals.write(k, total), terms_all.write(k, terms)
        k = k + 1
        converged, rule = rule.read(total, tolerance)
        done = tf.logical_or(converged, n >= end)
    return _State(n, done, converged, rule), totals.stack(), terms_all.stack()


def run_adam(image, settings, schedule, report, *, memory_bytes: int | None = None):
    """Adam through `schedule` [(Objective, steps, objective args)], reporting each step; a
    phase that converges hands its unused steps to the next. Returns (image, last losses, steps
    done, whether the last phase converged before its budget). `memory_bytes` is L-BFGS's."""
    x = tf.Variable(image[None], dtype=tf.float32)
    m = tf.Variable(tf.zeros_like(x))
    v = tf.Variable(tf.zeros_like(x))
    rate = tf.constant(settings.learning_rate, tf.float32)
    last, n, carry, converged = None, 0, 0, False
    clock = chunked.Clock()
    for i, (objective, steps, objective_args) in enumerate(schedule):
        if report.halted:  # the look rule ended the level (reporter.py)
            break
        if i:
            report.new_phase()
        adam_step = objective.traced(adam_update)
        end, converged = n + steps + carry, False
        if chunked.used_for(objective):
            state = _State(tf.constant(n), tf.constant(n >= end), tf.constant(False),
                           chunked.Tolerance.of(report))
            state, n, losses_now = chunked.run(objective.traced(adam_chunk), report, clock, n, end, state,
                                   lambda _: x.numpy()[0],
                                   tf.constant(report.settings.tolerance, tf.float64), x, m, v,
                                   rate, *objective_args)
            converged, last = bool(state.converged), losses_now or last
            carry = end - n
            continue
        while n < end and not converged:
            n += 1
            total, terms = adam_step(x, m, v, tf.constant(n), rate, *objective_args)
            last = losses_of(total, terms)
            converged = report.step(last, lambda: x.numpy()[0])
        carry = end - n
    return x.numpy()[0], last, n, converged
