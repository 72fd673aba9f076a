"""Research harness beside the ntlb library (as open_clip_train beside open_clip): the explainer benchmark, and the
trainers of the bundled world CLIP and world VQGAN. It imports ntlb; ntlb never imports it (the CLI's
`ntlb benchmark` and `ntlb world train...` commands load it when run)."""
