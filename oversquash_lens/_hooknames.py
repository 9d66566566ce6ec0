"""TransformerLens hook-point names, shared by HookedTransformer and TransformerBridge.

With ``enable_compatibility_mode()`` the bridge fires every one of these under the same
name as HookedTransformer. In the paper's notation: v(0) is ``resid_pre(0)``, v(ℓ+1) is
``resid_post(ℓ)``, y_n is the final norm's output at the last position, and Λ(ℓ) is
``pattern(ℓ)``.
"""

EMBED = "hook_embed"
POS_EMBED = "hook_pos_embed"
FINAL_NORM = "ln_final.hook_normalized"
# Not a TransformerLens hook point: the unembedding's output, which ``attach`` serves to
# analyzers through a module hook (HookedTransformer has no hook on the logits).
LOGITS = "logits"


def resid_pre(layer: int) -> str:
    """Residual stream entering block ``layer`` (v(ℓ) in the paper)."""
    return f"blocks.{layer}.hook_resid_pre"


def resid_mid(layer: int) -> str:
    """Residual stream between attention and MLP of block ``layer``."""
    return f"blocks.{layer}.hook_resid_mid"


def resid_post(layer: int) -> str:
    """Residual stream leaving block ``layer`` (v(ℓ+1) in the paper)."""
    return f"blocks.{layer}.hook_resid_post"


def pattern(layer: int) -> str:
    """Attention pattern of block ``layer``: [batch, head, query_pos, key_pos]."""
    return f"blocks.{layer}.attn.hook_pattern"


def v(layer: int) -> str:
    """Per-head attention values: [batch, pos, head (or KV head), d_head]."""
    return f"blocks.{layer}.attn.hook_v"


def ln1_normalized(layer: int) -> str:
    """Output of block ``layer``'s first norm (the attention's input): [batch, pos, d_model]."""
    return f"blocks.{layer}.ln1.hook_normalized"


def mlp_pre_linear(layer: int) -> str:
    """A gated MLP's linear branch ``x W_in``: [batch, pos, d_mlp]."""
    return f"blocks.{layer}.mlp.hook_pre_linear"


def mlp_points(layer: int) -> list[str]:
    """An MLP's pre-activation, (gated) linear branch, post-activation and output."""
    return [
        f"blocks.{layer}.mlp.hook_pre",
        mlp_pre_linear(layer),
        f"blocks.{layer}.mlp.hook_post",
        f"blocks.{layer}.hook_mlp_out",
    ]


def z(layer: int) -> str:
    """Per-head attention outputs before W_O: [batch, pos, head, d_head]."""
    return f"blocks.{layer}.attn.hook_z"


def attn_out(layer: int) -> str:
    """Attention block output added to the residual stream: [batch, pos, d_model]."""
    return f"blocks.{layer}.hook_attn_out"


def residual_points(n_layers: int) -> list[str]:
    """v(0), v(1), ..., v(L): the input to block 0, then every block's output."""
    return [resid_pre(0)] + [resid_post(layer) for layer in range(n_layers)]


def residual_stream(n_layers: int) -> list[str]:
    """Every residual-stream point, including the one between attention and MLP."""
    names = [resid_pre(0)]
    for layer in range(n_layers):
        names += [resid_mid(layer), resid_post(layer)]
    return names
