"""Training-free edits of a model's refusal behaviour (stage: steer).

`directions` estimates refusal directions by difference in means of residual-stream activations, and the
false-refusal direction partially orthogonalised against the true-refusal one (Wang et al., ICLR 2025,
arXiv 2410.03415). `ablation` removes a direction from everything that writes to the residual stream, either
reversibly with forward hooks (to compare candidates on validation prompts) or as a weight edit saved as an
ordinary model folder that every stage loads with `hf:<folder>`. `pipeline` is the recipe: fit, choose the layer,
position and orthogonalisation on validation by a rule fixed in advance, save.
"""
