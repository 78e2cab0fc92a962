"""Flush-to-zero for a kernel's own work: ``old = ftz_enter()`` ... ``ftz_exit(old)``.

Subnormal floats (below 1.2e-38 in float32) cost ~100 cycles an operation on x86.  They appear
where values decay geometrically: an LSTM's dc *= f through hundreds of steps, Adam's first
moment of a weight whose gradient is always 0 (m *= 0.9 each step: subnormal after ~800 steps,
and the MLP/CNN update then ran 10x slower).  ``ftz_enter`` sets FTZ (results that would be
subnormal become 0) and DAZ (subnormal inputs read as 0) in the calling thread's MXCSR and
returns the old value; ``ftz_exit`` restores it, so the caller's floating-point state is
untouched.  Kernels call them at the start and end of every ``prange`` iteration (each runs on
some worker thread).  Off x86 both are no-ops.  PyTorch's equivalent is the process-wide
``torch.set_flush_denormal(True)``.

Shared by several kernel files: after editing, clear the Numba caches (docs/kernels.md).
"""
import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
_FTZ_DAZ = 0x8040


def _mxcsr_fns(builder):
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    st = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.stmxcsr")
    ld = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.ldmxcsr")
    return st, ld


@intrinsic
def ftz_enter(typingctx):
    """Set flush-to-zero and denormals-are-zero; return the previous MXCSR (0 off x86)."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        if not _X86:
            return ir.Constant(i32, 0)
        slot = cgutils.alloca_once(builder, i32)
        ptr = builder.bitcast(slot, ir.IntType(8).as_pointer())
        st, ld = _mxcsr_fns(builder)
        builder.call(st, [ptr])
        old = builder.load(slot)
        builder.store(builder.or_(old, ir.Constant(i32, _FTZ_DAZ)), slot)
        builder.call(ld, [ptr])
        return old
    return types.uint32(), codegen


@intrinsic
def ftz_exit(typingctx, old):
    """Restore the MXCSR value returned by ftz_enter."""
    def codegen(context, builder, signature, args):
        if _X86:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(args[0], slot)
            _, ld = _mxcsr_fns(builder)
            builder.call(ld, [builder.bitcast(slot, ir.IntType(8).as_pointer())])
        return context.get_dummy_value()
    return types.none(types.uint32), codegen
