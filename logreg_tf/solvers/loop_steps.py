"""An exact solver as the loop's steps (steps.StepFunctions): one epoch of the
loop is one solver iteration, on the whole training set.

The solver's state (objective.py's float64 point and, for L-BFGS, its memory)
is checkpointed beside the model, whose float32 weights are the solver's
rounded after every iteration; the loop's logging, TensorBoard events,
figures and checkpoints are the SGD run's.
"""

from typing import Dict

from absl import logging
import tensorflow as tf

from logreg_tf.solvers import SOLVERS
from logreg_tf.solvers.objective import Objective, objective_for
from logreg_tf.steps import EpochResult, EvalResult, evaluate


class SolverSteps:
  """steps.StepFunctions for `--solver=lbfgs|newton_cg`."""

  def __init__(self, name: str, model, head, *, l2: float, tol: float,
               max_iter: int):
    self.model, self.head, self.l2 = model, head, float(l2)
    self.max_iter = max_iter
    self.solver = SOLVERS[name](model.kernel, model.bias is not None, l2,
                                tol)
    self.optimizer = self.solver  # what the loop and checkpoints count
    self.state: Dict[str, tf.Variable] = {
        f"solver/{k}": v for k, v in self.solver.variables().items()}
    self._objective = None  # (x, its Objective)
    self._eval_compiled = tf.function(self._eval_step, autograph=False)
    self._block_metrics = None  # compiled on a streamed split's first use
    self.eval_step = self._evaluate

  @property
  def finished(self) -> bool:
    return self.solver.finished

  def close(self) -> None:
    """StepFunctions.close: nothing is held here."""

  def objective(self, x, y) -> Objective:
    """The objective on the training set (x, y), made once."""
    if self._objective is None or self._objective[0] is not x:
      self._objective = (x, objective_for(self.head, x, y, self.l2,
                                          self.model.bias is not None))
    return self._objective[1]

  def _eval_step(self, x, y) -> EvalResult:
    return evaluate(self.model, self.head, x, y)

  def _evaluate(self, x, y) -> EvalResult:
    """eval_step, or block by block on a streamed split."""
    if not hasattr(x, "blocks"):
      return self._eval_compiled(x, y)
    from logreg_tf.streamed_steps import block_metrics, evaluate_blocks
    if self._block_metrics is None:
      self._block_metrics = tf.function(lambda x, y: block_metrics(
          self.model, self.head, x, y), autograph=False)
    return evaluate_blocks(self._block_metrics, x, y)

  def train_epoch(self, x, y, epoch) -> EpochResult:
    del epoch  # full batch: nothing to shuffle
    solver = self.solver
    solver.step(self.objective(x, y))
    self.model.kernel.assign(tf.cast(solver.w, self.model.kernel.dtype))
    if solver.b is not None:
      self.model.bias.assign(tf.cast(solver.b, self.model.bias.dtype))
    record = solver.record()
    if record["iterations"] >= self.max_iter and not record["converged"]:
      logging.warning(
          "%s stopped after %d iterations without meeting --tol=%g "
          "(gradient norm %.3e, suboptimality bound %s): raise --max_iter",
          solver.name, record["iterations"], solver.tol,
          record["gradient_norm"], record["suboptimality_bound"])
    finite = bool(tf.math.is_finite(solver.value)) and bool(
        tf.reduce_all(tf.math.is_finite(solver.w)))
    return EpochResult(tf.cast(solver.value, tf.float32), tf.constant(1),
                       tf.constant(finite), solver.finished,
                       _logged(record))

  def train_epoch_and_eval(self, x, y, epoch, x_test, y_test):
    return (self.train_epoch(x, y, epoch), self._evaluate(x_test, y_test))


def _logged(record: dict) -> dict:
  """What each display step logs of the solver."""
  out = {"objective": record["objective"],
         "gradient_norm": record["gradient_norm"]}
  if record["suboptimality_bound"] is not None:
    out["suboptimality_bound"] = record["suboptimality_bound"]
  return out
