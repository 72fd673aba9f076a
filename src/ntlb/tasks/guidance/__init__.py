"""Text guidance of a generator by latent optimisation: optimisation (the shared loop), editing (edit and
generate from text), blending (carry a target's attribute onto sources)."""
