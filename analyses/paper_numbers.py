"""The reference study's published numbers (Jain et al. 2023, arXiv 2311.12786 v2), as data.

Transcribed from ../shared/reference/jain2023_protocol.md, which read them from the paper. Reports place
them beside ours; nothing here is computed. Accuracies are percentages as printed.
"""

# Tab. 5 (Counting, 200K pretraining iterations): accuracy after 10K fine-tuning iterations.
# Key: (eta, P_T(a), C_Tr) -> (O_PT @ C_Te=0, O_FT @ C_Te=0, O_FT @ C_Te=1). The eta values use the
# appendix labelling (eta_L = 1e-4, eta_M = 1e-5, eta_S = 1e-6).
PCFG_TABLE5: dict[tuple[float, float, float], tuple[float, float, float]] = {
    (1e-4, 0.999, 0): (9.5, 100.0, 87.5),
    (1e-4, 0.999, 1): (15.2, 1.6, 100.0),
    (1e-4, 0.5, 0): (14.7, 100.0, 99.2),
    (1e-4, 0.5, 1): (19.0, 16.0, 100.0),
    (1e-5, 0.999, 0): (10.2, 99.8, 79.7),
    (1e-5, 0.999, 1): (17.5, 0.0, 100.0),
    (1e-5, 0.9, 1): (13.5, 3.6, 100.0),
    (1e-5, 0.5, 1): (41.2, 19.6, 100.0),
    (1e-6, 0.999, 0): (29.0, 51.8, 29.2),
    (1e-6, 0.999, 1): (2.3, 0.0, 99.9),
    (1e-6, 0.9, 0): (100.0, 99.5, 84.6),
    (1e-6, 0.5, 1): (97.6, 73.9, 100.0),
}

# Count-b accuracy of the pretrained models before fine-tuning (200K iterations), by P_T(a).
PCFG_PRETRAINED_COUNT_B = {0.999: 27.1, 0.9: 99.9, 0.5: 99.9}

# Headline numbers of the PCFG part (paper text and figures).
PCFG_HEADLINES = {
    "neurons pruned to revive O_PT": "5-15 (Fig. 7, low prior, small LR)",
    "reverse FT revival, strongly relevant (P^H, P^M)": "0.1K-1K iterations",
    "reverse FT revival, weakly relevant (P^L)": "about 3K iterations",
    "Scr.+FT baseline": "about 4.5K iterations, and only at eta_M",
    "probe accuracy for count(O_PT)": "follows the pretrained model except eta_M with a low prior (Fig. 8)",
}

# Tab. 3 (Tracr fine-tuning), the protocol's key cells. Key: (program, eta, C_Tr) ->
# (Acc O_PT @ C_Te=1, Acc O_FT @ C_Te=1, Acc O_PT @ C_Te=0, Acc O_FT @ C_Te=0). Programs: "counter"
# (count b instead of a) and "max_identifier" (O_FT not stated in the paper; we use the 6th largest).
TRACR_TABLE3: dict[tuple[str, float, float], tuple[float, float, float, float]] = {
    ("counter", 1e-1, 0): (0.0, 100.0, 0.0, 100.0),
    ("counter", 1e-1, 1): (0.0, 100.0, 35.8, 0.7),
    ("counter", 1e-2, 0): (1.1, 96.3, 0.0, 98.8),
    ("counter", 1e-2, 1): (0.3, 98.3, 4.2, 0.2),
    ("counter", 1e-3, 0): (54.6, 1.2, 25.7, 27.2),
    ("counter", 1e-3, 1): (4.0, 94.3, 10.3, 2.2),
    ("counter", 1e-4, 0): (32.6, 0.0, 10.6, 28.7),
    ("counter", 1e-4, 1): (1.6, 98.3, 10.6, 0.2),
    ("max_identifier", 1e-1, 0): (20.3, 34.5, 0.0, 99.3),
    ("max_identifier", 1e-1, 1): (0.3, 99.6, 16.8, 37.8),
    ("max_identifier", 1e-2, 0): (29.7, 0.2, 16.3, 52.6),
    ("max_identifier", 1e-2, 1): (11.1, 78.5, 23.8, 14.4),
    ("max_identifier", 1e-3, 0): (6.4, 20.2, 4.5, 28.5),
    ("max_identifier", 1e-3, 1): (16.0, 33.2, 12.8, 14.0),
    ("max_identifier", 1e-4, 0): (0.5, 82.6, 0.5, 91.1),
    ("max_identifier", 1e-4, 1): (0.0, 90.2, 0.7, 88.6),
}

# Tab. 1 (TinyStories): % of generations with a twist during recovery (reverse FT) at iterations
# 0 / 30 / 300 / 3000. Rows: deletion type (F = filtering, F+RR = filtering + randomised labels,
# F+MM = filtering + mix & match) at eta_M = 1e-4 or eta_S = 1e-5, and the Not-in-PT control. Each cell
# rests on 16 generations (protocol §7.5). The notebook shows 62 for F (eta_M) at 3000, where the paper
# prints 82 (protocol §7.6 [!]); the paper's value is kept here.
TINYSTORIES_TABLE1_STEPS: tuple[int, ...] = (0, 30, 300, 3000)
TINYSTORIES_TABLE1: dict[str, tuple[int, int, int, int]] = {
    "F (eta_M)": (44, 81, 81, 82),
    "F+RR (eta_M)": (12, 56, 69, 75),
    "F+MM (eta_M)": (31, 88, 50, 75),
    "F (eta_S)": (69, 88, 75, 94),
    "F+RR (eta_S)": (12, 44, 81, 81),
    "F+MM (eta_S)": (50, 81, 62, 81),
    "Not in PT": (12, 31, 44, 81),
}
