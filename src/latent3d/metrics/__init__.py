"""Evaluation: in-domain classifiers and scores trained by latent3d on its own renders.

``image`` (PSNR, SSIM, mask IoU), ``depth`` (AbsRel, RMSE, delta1 with alignments), ``generation`` (FID, KID, Chamfer
COV / MMD, memorisation), and the measuring nets: ``classifier`` (object / colour / view), ``clip_score`` (a
CLIP-style image/text model), ``depth_net`` (a reference depth estimator), ``fit`` (how they are fitted),
``weights`` (their saved folders)."""
