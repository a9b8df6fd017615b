"""The training modes and their numbers, without torch: command lines offer them in ``--help``.

``full`` is the paper's recipe (Section 4: 70,000 iterations). ``quick`` trains for a fixed time,
not a fixed count, so a technician's wait is the same on any machine: as many iterations as fit
in QUICK_TRAIN_S, at most QUICK_MAX_ITERATIONS (a GPU reaches the cap in minutes). With collection
and calibration, a quick teach of 50-200 images ends within 30 minutes on the 2-core CPU this
project is measured on (docs/method.md, "Quick teach"); the paper's run takes days there, so ``quick`` is
the CPU's default (:func:`inspector.method.training.default_mode`).
"""

#: Paper, Section 4: Adam, lr 1e-4, weight decay 1e-5, lr x0.1 after 95 % of 70,000 iterations.
PAPER_ITERATIONS = 70_000
QUICK_TRAIN_S = 24 * 60
QUICK_MAX_ITERATIONS = 10_000
TRAIN_MODES = ("quick", "full")
#: Budgets below this many iterations train with the short recipe (no autoencoder, cached teacher
#: outputs, batches, cosine schedule: inspector.method.training); the paper's recipe needs its
#: tens of thousands of iterations to pay off.
SHORT_RECIPE_BELOW = 10_000
