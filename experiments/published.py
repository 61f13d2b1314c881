"""The study's published neural-ODE test errors (global, 5 seeds unless noted), quoted from
/work/shared/data/README.md: its revised code, torchdiffeq Dopri5 at rtol 1e-7 / atol 1e-9,
width 15, hidden 50, 3 basis functions. ELM in min-max normalised outputs, CDR in physical
(unscaled) outputs; its DCR is the study's real DC-resistivity data, not jaxode's analogue."""

PUBLISHED = {
    ("elm", "static"): "0.273 ± 0.003",
    ("elm", "monomial"): "0.273 ± 0.010",
    ("elm", "legendre"): "0.249 ± 0.029",
    ("cdr", "static"): "0.022 ± 0.004",
    ("cdr", "monomial"): "0.0215 (1 seed)",
    ("cdr", "legendre"): "0.0131 (1 seed)",
    ("dcr", "static"): "2.07 ± 0.91 (real DCR)",
}
