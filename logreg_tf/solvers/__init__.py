"""Exact full-batch solvers of the regularised objective (--solver): L-BFGS
and Newton-CG in TensorFlow, with a certificate of how far a point is from
the optimum (objective.py). Imported only when a run or a command asks for
them."""

from logreg_tf.solvers.lbfgs import LBFGS
from logreg_tf.solvers.newton_cg import NewtonCG

SOLVERS = {"lbfgs": LBFGS, "newton_cg": NewtonCG}
