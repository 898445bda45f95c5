"""Scoring translations: L1/PSNR/SSIM, FID/KID, the FCN-score."""
