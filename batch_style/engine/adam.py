"""Adam as in the seed and the TensorFlow tutorial, on the pixels in [0,1]."""

from __future__ import annotations

import tensorflow as tf

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


def run_adam(image, settings, schedule, report):
    """Adam through `schedule` [(Objective, steps, objective args)], reporting each step;
    returns (image, last losses, steps done, whether the tolerance rule stopped it)."""
    x = tf.Variable(image[None], dtype=tf.float32)
    m = tf.Variable(tf.zeros_like(x))
    v = tf.Variable(tf.zeros_like(x))
    rate = tf.constant(settings.learning_rate, tf.float32)
    last, n = None, 0
    for i, (objective, steps, objective_args) in enumerate(schedule):
        if i:
            report.new_phase()
        adam_step = objective.traced(adam_update)
        for _ in range(steps):
            n += 1
            total, terms = adam_step(x, m, v, tf.constant(n), rate, *objective_args)
            last = losses_of(total, terms)
            if report.step(last, lambda: x.numpy()[0]):
                return x.numpy()[0], last, n, True
    return x.numpy()[0], last, n, False
