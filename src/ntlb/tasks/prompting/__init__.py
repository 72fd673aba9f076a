"""Class prompts: zero_shot (classification), learner (learned context), training (prompt learning with the
explainability loss), explaining (what learned prompts attend to), linear_probe (the baseline)."""
