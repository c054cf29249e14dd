"""Training an evaluation network on several replicas (``tf.distribute``) as one device
would on the global batch.

Keras's own step clips each replica's share of the gradient before summing, and its
multi-worker reduction fails on scalar logs. :class:`ReplicatedTraining` sums the
gradients over the replicas first, then clips them as the optimizer's
``global_clipnorm`` says, and averages the replicas' logs; on one device Keras's own
train and test functions run.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from kdarts.compat import lean_in_other_threads, loss_tracker


class ReplicatedTraining:
    """A mixin for a :class:`keras.Model` (listed before it): the multi-replica train and
    test steps. The model's :class:`kdarts.runtime.LeanTrainFunction` calls
    :meth:`_replicated_train_function` when there is more than one replica.

    A step is one device's on the global batch (drop-path masks aside: each replica
    draws its own).
    """

    def train_step(self, data):
        """Keras's step on one device. With R > 1 replicas: the gradients are summed over
        the replicas, then clipped by the optimizer's ``global_clipnorm`` (Keras would clip
        each replica's share before summing), and each replica hands the optimizer 1/R of
        them, since it sums them again."""
        ctx = tf.distribute.get_replica_context()
        replicas = 1 if ctx is None else ctx.num_replicas_in_sync
        if replicas == 1:
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                     training=True)  # the shard's mean ÷ R (Keras scales)
            scaled = self.optimizer.scale_loss(loss)
        loss_tracker(self).update_state(loss * replicas, sample_weight=tf.shape(x)[0])
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tape.gradient(scaled, variables))
        clip = self._replicas_clipnorm
        if clip:
            scale = getattr(self.optimizer, "dynamic_scale", None)
            if scale is not None:  # clip the true gradients; the optimizer unscales later
                grads = [g / scale for g in grads]
            grads, _ = tf.clip_by_global_norm(grads, clip)
            if scale is not None:
                grads = [g * scale for g in grads]
        self.optimizer.apply([g / replicas for g in grads], variables)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _replicated_train_function(self):
        """With several replicas, one step per call: the replicas run :meth:`train_step`
        and their logs are averaged (Keras's own multi-worker reduction fails on scalar
        logs); the step, not the optimizer, clips (after the all-reduce), so the
        optimizer's ``global_clipnorm`` is handed to the step around each call (the
        replicas trace the step in threads of their own). On one device Keras's train
        function runs; both under the lean graph-optimiser settings
        (:class:`kdarts.runtime.LeanTrainFunction`: a shorter first call, the same
        arithmetic)."""
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        step = self._replicated(self.train_step)

        @functools.wraps(step, updated=())  # __wrapped__: the tf.function, for inspection
        def train_function(iterator):
            self._replicas_clipnorm, inner.global_clipnorm = inner.global_clipnorm, None
            try:
                return step(iterator)
            finally:
                inner.global_clipnorm = self._replicas_clipnorm

        return train_function

    def make_test_function(self, force: bool = False):
        """Keras's on one device; with several replicas one step per call, the replicas'
        logs averaged (Keras's own multi-worker reduction fails on scalar logs)."""
        if self.distribute_strategy.num_replicas_in_sync == 1:
            return super().make_test_function(force)
        if self.test_function is None or force:
            self.test_function = self._replicated(self.test_step)
        return self.test_function

    def _replicated(self, step_fn):
        """``step_fn`` on every replica for the next batch, the logs averaged."""
        strategy = self.distribute_strategy
        if self.steps_per_execution != 1:
            raise ValueError("an EvalNetwork under a multi-replica strategy runs one step per "
                             f"call: compile(steps_per_execution=1), got {self.steps_per_execution}")

        @tf.function(jit_compile=bool(self.jit_compile))
        def step(iterator):
            logs = strategy.run(lean_in_other_threads(step_fn), args=(next(iterator),))
            # each replica's metrics are its own shard's
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                    for k, v in logs.items()}

        return step
