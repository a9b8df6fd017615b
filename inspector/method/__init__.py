"""EfficientAD as the paper describes it (Batzner, Heckler, Koenig, WACV 2024).

``networks``     PDN-S, PDN-M (teacher and student) and the autoencoder (Tables 6-8)
``efficientad``  the method as pure functions: losses, map normalisation, the combined map
``training``     Algorithm 1 (the paper's recipe) and the short-budget recipe; checkpoints, resume
``distill``      the teacher, distilled from a pretrained backbone
"""
