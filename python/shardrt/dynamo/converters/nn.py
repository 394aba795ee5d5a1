"""Neural-network converters: normalizations, convolution, pooling, attention."""
from __future__ import annotations

import operator

import torch
import torch.fx

from .context import dtype, rank, shape, static_shape
from .registry import converter


def _only_first_output_used(node):
    for u in node.users:
        if u.target is not operator.getitem:
            return "a consumer needs the whole tuple"
        if u.args[1] != 0:
            return "only the first output (the normalized tensor) is converted"
    return True


def _ones_or(ctx, arg, n, out):
    return ctx.get(arg) if arg is not None else ctx.const(torch.ones(n, dtype=out))


def _zeros_or(ctx, arg, n, out):
    return ctx.get(arg) if arg is not None else ctx.const(torch.zeros(n, dtype=out))


def _ln_ok(node):
    r = _only_first_output_used(node)
    if r is not True:
        return r
    return static_shape(node.args[0]) is not None or node.args[2] is not None or "dynamic shape without weight"


@converter("aten.native_layer_norm.default", capability=_ln_ok)
def _layer_norm(ctx, node):
    x, normalized_shape, w, b, eps = node.args[:5]
    out = dtype(node.args[0])
    k = len(normalized_shape)
    ns = list(normalized_shape)
    y = ctx.op("LayerNormalization", [ctx.get(x), _ones_or(ctx, w, ns, out), _zeros_or(ctx, b, ns, out)],
               {"axis": -k, "epsilon": float(eps)})
    return [y, None, None]


@converter("aten.native_group_norm.default", capability=_only_first_output_used)
def _group_norm(ctx, node):
    x, w, b, _n, c, _hw, group, eps = node.args[:8]
    out = dtype(node.args[0])
    # scale/bias with C elements: GroupNormalization's opset-21 reading (per channel)
    y = ctx.op("GroupNormalization", [ctx.get(x), _ones_or(ctx, w, [c], out), _zeros_or(ctx, b, [c], out)],
               {"num_groups": int(group), "epsilon": float(eps)})
    return [y, None, None]


def _bn_ok(node):
    r = _only_first_output_used(node)
    if r is not True:
        return r
    if str(node.target) == "aten.native_batch_norm.default" and node.args[5]:
        return "training mode"
    return node.args[3] is not None and node.args[4] is not None or "needs running statistics"


@converter("aten._native_batch_norm_legit_no_training.default", "aten.native_batch_norm.default", capability=_bn_ok)
def _batch_norm(ctx, node):
    x, w, b, rm, rv = node.args[:5]
    eps = node.args[-1]
    c = shape(x)[1]
    out = dtype(x)
    y = ctx.op("BatchNormalization", [ctx.get(x), _ones_or(ctx, w, [c], out), _zeros_or(ctx, b, [c], out),
                                      ctx.get(rm), ctx.get(rv)], {"epsilon": float(eps)})
    return [y, None, None]


def _conv_ok(node):
    if not dtype(node).is_floating_point:
        return "floating-point only"
    if not all(isinstance(v, int) for a in node.args[3:6] for v in a):
        return "symbolic geometry"
    return True


@converter("aten.convolution.default", capability=_conv_ok)
def _convolution(ctx, node):
    x, w, b, stride, padding, dilation, transposed, output_padding, groups = node.args[:9]
    nd = rank(x) - 2
    stride = list(stride) * (nd if len(stride) == 1 else 1)
    padding = list(padding) * (nd if len(padding) == 1 else 1)
    dilation = list(dilation) * (nd if len(dilation) == 1 else 1)
    ins = [ctx.get(x), ctx.get(w)] + ([ctx.get(b)] if b is not None else [])
    attrs = {"strides": stride, "pads": padding + padding, "dilations": dilation, "group": int(groups),
             "kernel_shape": shape(w)[2:]}
    if transposed:
        op = list(output_padding) * (nd if len(output_padding) == 1 else 1)
        attrs["output_padding"] = op
        return ctx.op("ConvTranspose", ins, attrs)
    return ctx.op("Conv", ins, attrs)


def _pool_args(node, nd):
    a = list(node.args)
    kernel = list(a[1])
    kernel = kernel * (nd if len(kernel) == 1 else 1)
    stride = list(a[2]) if len(a) > 2 and a[2] else kernel
    stride = stride * (nd if len(stride) == 1 else 1)
    padding = a[3] if len(a) > 3 else 0
    padding = [padding] * nd if isinstance(padding, int) else list(padding) * (nd if len(padding) == 1 else 1)
    return kernel, stride, padding


def _maxpool_ok(node):
    if str(node.target).endswith("with_indices.default"):
        r = _only_first_output_used(node)
        if r is not True:
            return r
    a = list(node.args)
    nd = rank(node.args[0]) - 2
    _, _, padding = _pool_args(node, nd)
    ceil = a[5] if len(a) > 5 else node.kwargs.get("ceil_mode", False)
    # with padding, torch drops a last window that would start in the right padding; ONNX keeps it
    return not (ceil and any(padding)) or "ceil_mode with padding"


@converter("aten.max_pool2d_with_indices.default", "aten.max_pool2d.default", "aten.max_pool3d_with_indices.default",
           "aten.max_pool1d.default", capability=_maxpool_ok)
def _max_pool(ctx, node):
    nd = rank(node.args[0]) - 2
    kernel, stride, padding = _pool_args(node, nd)
    a = list(node.args)
    dil = a[4] if len(a) > 4 else 1
    dil = [dil] * nd if isinstance(dil, int) else list(dil) * (nd if len(dil) == 1 else 1)
    ceil = a[5] if len(a) > 5 else node.kwargs.get("ceil_mode", False)
    y = ctx.op("MaxPool", [ctx.get(node.args[0])], {"kernel_shape": kernel, "strides": stride, "pads": padding + padding,
                                                    "dilations": dil, "ceil_mode": int(bool(ceil))})
    return [y, None] if str(node.target).endswith("with_indices.default") else y


def _avgpool_ok(node):
    a = list(node.args)
    ceil = a[4] if len(a) > 4 else node.kwargs.get("ceil_mode", False)
    div = a[6] if len(a) > 6 else node.kwargs.get("divisor_override")
    if ceil:
        return "ceil_mode"
    return div is None or "divisor_override"


@converter("aten.avg_pool2d.default", "aten.avg_pool1d.default", "aten.avg_pool3d.default", capability=_avgpool_ok)
def _avg_pool(ctx, node):
    nd = rank(node.args[0]) - 2
    kernel, stride, padding = _pool_args(node, nd)
    a = list(node.args)
    cip = a[5] if len(a) > 5 else node.kwargs.get("count_include_pad", True)
    return ctx.op("AveragePool", [ctx.get(node.args[0])], {"kernel_shape": kernel, "strides": stride,
                                                           "pads": padding + padding, "count_include_pad": int(bool(cip))})


def _adaptive_ok(node):
    s = static_shape(node.args[0])
    if s is None:
        return "dynamic shape"
    out = list(node.args[1])
    return all(o in (None,) or i % o == 0 for i, o in zip(s[2:], out)) or "input not divisible by output size"


@converter("aten._adaptive_avg_pool2d.default", "aten.adaptive_avg_pool2d.default", capability=_adaptive_ok)
def _adaptive_avg_pool(ctx, node):
    x = node.args[0]
    s = static_shape(x)[2:]
    out = [o if o is not None else i for i, o in zip(s, node.args[1])]
    if all(o == 1 for o in out):
        return ctx.op("GlobalAveragePool", [ctx.get(x)])
    k = [i // o for i, o in zip(s, out)]
    return ctx.op("AveragePool", [ctx.get(x)], {"kernel_shape": k, "strides": k})


# --- attention ---------------------------------------------------------------------------------
_SDPA = {
    # name: (positions of dropout_p, is_causal, attn_mask; keyword names), outputs
    "aten._scaled_dot_product_flash_attention_for_cpu.default": (3, 4, None),
    "aten.scaled_dot_product_attention.default": (4, 5, 3),
    "aten._scaled_dot_product_efficient_attention.default": (5, 6, 3),
}


def _sdpa_args(node):
    name = str(node.target)
    pd, pc, pm = _SDPA[name]
    a = list(node.args)
    kw = node.kwargs
    dropout = a[pd] if len(a) > pd else kw.get("dropout_p", 0.0)
    causal = a[pc] if len(a) > pc else kw.get("is_causal", False)
    mask = (a[pm] if pm is not None and len(a) > pm else kw.get("attn_mask", kw.get("attn_bias")))
    scale = kw.get("scale")
    if name == "aten._scaled_dot_product_efficient_attention.default" and len(a) > 7:
        scale = a[7]
    return dropout, causal, mask, scale


def _sdpa_ok(node):
    if str(node.target) != "aten.scaled_dot_product_attention.default":
        r = _only_first_output_used(node)
        if r is not True:
            return r
    q, k = node.args[0], node.args[1]
    if rank(q) != 4 or rank(k) != 4:
        return "4-D query/key/value only"
    if not dtype(q).is_floating_point:
        return "floating-point only"
    dropout, causal, mask, _ = _sdpa_args(node)
    if dropout:
        return "dropout"
    if causal:
        sq, skv = shape(q)[2], shape(k)[2]
        # torch aligns the causal mask top-left, shardrt bottom-right: they agree when Sq == Skv
        if not (isinstance(sq, int) and sq == skv) and not (str(sq) == str(skv)):
            return "causal with Sq != Skv"
        if mask is not None:
            return "causal together with a mask"
    return True


@converter(*_SDPA, capability=_sdpa_ok)
def _sdpa(ctx, node):
    q, k, v = node.args[:3]
    _, causal, mask, scale = _sdpa_args(node)
    ins = [ctx.get(q), ctx.get(k), ctx.get(v)]
    if mask is not None:
        ins.append(ctx.get(mask))
    y = ctx.op("shardrt.Attention", ins, {"scale": float(scale or 0.0), "causal": int(bool(causal))})
    if str(node.target) == "aten.scaled_dot_product_attention.default":
        return y
    return [y] + [None] * 8
