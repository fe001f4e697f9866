"""Numbers the paper reports (Ulyanov et al., CVPR 2018; per-image SR values recomputed with the
authors' protocol from their published results, see shared PAPER.md). PSNR in dB."""

SR_X4 = {
    "set5": {"baby": 31.49, "bird": 31.80, "butterfly": 26.23, "head": 31.04, "woman": 28.93},
    "set14": {"baboon": 22.29, "barbara": 25.53, "bridge": 24.38, "coastguard": 25.81, "comic": 22.18,
              "face": 31.02, "flowers": 26.14, "foreman": 31.66, "lenna": 30.83, "man": 26.09,
              "monarch": 29.98, "pepper": 32.08, "ppt3": 24.38, "zebra": 25.71},
}
SR_X4_AVERAGE = {"set5": 29.90, "set14": 27.00}
SR_X8_AVERAGE = {"set5": 25.89, "set14": 24.15}  # reg_noise_std 0.05 (the notebook's ×8 setting)

#: Table 1, 50% of pixels missing, keyed by the file stems of the 11-image set
INPAINT_50 = {"barbara": 32.22, "boat": 33.06, "house": 39.16, "Lena": 36.16, "Peppers": 33.05,
              "Cameraman": 29.8, "couple": 32.52, "fingerprint": 32.84, "hill": 32.77, "Man": 32.20,
              "montage": 34.54}
INPAINT_50_AVERAGE = 33.48
