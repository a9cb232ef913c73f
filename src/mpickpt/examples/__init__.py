"""Examples shipped with the package: the 2-D heat equation that ``mpickpt demo`` runs.

``python -m mpickpt.examples.heat2d --help`` lists its options. The other examples (and the
plain-MPI twins) are in the ``examples/`` folder of the source repository.
"""
