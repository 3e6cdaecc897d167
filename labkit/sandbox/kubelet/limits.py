"""A wasm container's ``resources.limits``, enforced inside wasmtime as a cgroup enforces them on a Linux container.

The module runs in the node's process, so no cgroup can hold it alone; the store is held instead:

- **memory**: the container's linear memories come from a memory creator (:class:`MemoryBudget`) that
  refuses to grow them, together, past the limit. A refusal is the OOM kill: the container is killed at once
  and ends with reason ``OOMKilled`` and exit code 137, as containerd reports a container the kernel's OOM
  killer ended for exceeding its cgroup's ``memory.max``. (Inferred equivalence: the kernel counts the pages a
  process touches; this counts the linear memory a module asks for, which is the part a module controls.
  wasmtime's own tables, stacks and compiled code are not counted.)
- **cpu**: CFS bandwidth control, as the kubelet configures it: a quota of ``limit x 100 ms`` of CPU time per
  100 ms period (pkg/kubelet/cm/helpers_linux.go MilliCPUToQuota, QuotaPeriod = 100000 µs). A ticker bumps the
  epoch of every CPU-limited engine every 10 ms; the store's epoch callback then runs on the guest's own thread,
  charges the thread's CPU time to its budget and sleeps off any overdraft (:meth:`StoreGuard.on_epoch`).

The epoch callback also ends a killed guest (it returns an error, which unwinds the run), so a kill stays one
epoch bump away for limited and unlimited containers alike.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import mmap
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

#: CFS period the kubelet sets (cpu.cfs_period_us), and how often a CPU-limited guest is looked at.
CPU_PERIOD_S, TICK_S = 0.1, 0.01
MIN_CPU_MILLIS = 10
OOM_MESSAGE = "labkit: the container's memory limit was reached (OOMKilled)"

_SUFFIX = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** e for s, e in (("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3), ("M", 6), ("G", 9))},
    **{s: Decimal(10) ** e for s, e in (("T", 12), ("P", 15), ("E", 18))},
}
_QUANTITY = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?")


def quantity(value: object) -> Decimal:
    """A Kubernetes resource quantity (``64Mi``, ``100m``, ``1e9``, ``0.5``) as a number.

    >>> quantity("64Mi"), quantity("100m"), quantity("1e3"), quantity(2)
    (Decimal('67108864'), Decimal('0.100'), Decimal('1000'), Decimal('2'))
    """
    found = _QUANTITY.fullmatch(str(value).strip())
    if not found:
        raise ValueError(f"quantities must match the regular expression {_QUANTITY.pattern!r}: {value!r}")
    number, exponent, suffix = found.groups()
    try:
        scale = Decimal(10) ** int(exponent) if exponent else _SUFFIX[suffix or ""]
        return Decimal(number) * scale
    except InvalidOperation:
        raise ValueError(f"quantity out of range: {value!r}") from None


@dataclass(frozen=True)
class Limits:
    """What a container may use: bytes of linear memory and millicores of CPU (None: unlimited)."""

    memory_bytes: int | None = None
    cpu_millis: int | None = None

    @classmethod
    def of(cls, container: dict[str, Any]) -> Limits:
        """The container's ``resources.limits`` (rounded up, as Quantity.Value and MilliValue round).

        0 is no limit, as a 0 memory limit or CPU quota is in the CRI; a CPU quota is at least 1 ms per period
        (10m), as MilliCPUToQuota raises it to MinQuotaPeriod.
        """
        limits = (container.get("resources") or {}).get("limits") or {}
        memory = math.ceil(quantity(limits["memory"])) if "memory" in limits else 0
        cpu = math.ceil(quantity(limits["cpu"]) * 1000) if "cpu" in limits else 0
        return cls(memory if memory > 0 else None, max(cpu, MIN_CPU_MILLIS) if cpu > 0 else None)


# -- the registry the C callbacks look their Python state up in ---------------------------------------------
# The callbacks are module-level CFUNCTYPEs that never die, and their state is found by an integer key, because
# wasmtime may call a finalizer after the Python objects that set it up are gone (an engine outlives its store).

_objects: dict[int, Any] = {}
_keys = itertools.count(1)
_lock = threading.Lock()


def _register(obj: object) -> int:
    with _lock:
        key = next(_keys)
        _objects[key] = obj
    return key


def _forget(key: int | None) -> None:
    with _lock:
        _objects.pop(key or 0, None)


def _error(message: str) -> int:
    """A wasmtime_error_t* for a callback to return (wasmtime takes ownership)."""
    return ctypes.cast(ffi.wasmtime_error_new(message.encode()), ctypes.c_void_p).value or 0


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.mprotect.restype, _libc.mprotect.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.restype, _libc.munmap.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
_PROT_NONE, _RW = 0, mmap.PROT_READ | mmap.PROT_WRITE


@dataclass
class _Mapping:
    budget: MemoryBudget
    base: int
    size: int
    capacity: int
    mapped: int


class MemoryBudget:
    """The linear memories of one container, which together may not grow past *limit* bytes.

    Each memory is reserved as wasmtime asks (its reservation plus guard, inaccessible) and made accessible
    as it grows; a growth past the limit is refused, and *on_oom* runs first.
    """

    def __init__(self, limit: int, on_oom: Callable[[], None]) -> None:
        self.limit, self.used, self.oom_killed = limit, 0, False
        self._on_oom = on_oom
        self._creator = ffi.wasmtime_memory_creator_t(_register(self), _NEW_MEMORY, _FORGET)

    def install(self, config: wasmtime.Config) -> None:
        ffi.wasmtime_config_host_memory_creator_set(config.ptr(), ctypes.byref(self._creator))

    def refuse(self) -> int:
        self.oom_killed = True
        self._on_oom()
        return _error(OOM_MESSAGE)

    def new(self, minimum: int, reserved: int, guard: int, out: Any) -> int:
        if self.used + minimum > self.limit:
            return self.refuse()
        # a static memory must never move: reserve what wasmtime asks; a dynamic one can never need more than the limit
        capacity = reserved or -(-self.limit // mmap.PAGESIZE) * mmap.PAGESIZE
        mapped = capacity + guard
        base = _libc.mmap(None, mapped, _PROT_NONE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if base in (None, _MAP_FAILED):
            return _error(f"mmap of {mapped} bytes failed: errno {ctypes.get_errno()}")
        if minimum and _libc.mprotect(base, minimum, _RW) != 0:
            _libc.munmap(base, mapped)
            return _error(f"mprotect failed: errno {ctypes.get_errno()}")
        self.used += minimum
        out.env = _register(_Mapping(self, base, minimum, capacity, mapped))
        out.get_memory, out.grow_memory, out.finalizer = _GET_MEMORY, _GROW_MEMORY, _FREE_MEMORY
        return 0


def _new_memory(env: int, _ty: Any, minimum: int, _maximum: int, reserved: int, guard: int, out: Any) -> int:
    try:
        budget: MemoryBudget = _objects[env]
        return budget.new(minimum, reserved, guard, out.contents)
    except Exception as err:  # noqa: BLE001 - an exception must not cross into wasmtime
        return _error(f"labkit memory creator: {err}")


_NEW_MEMORY = ffi.wasmtime_new_memory_callback_t(_new_memory)


def _get_memory(env: int, size: Any, capacity: Any) -> int:
    mapping: _Mapping = _objects[env]
    size[0], capacity[0] = mapping.size, mapping.capacity
    return mapping.base


_GET_MEMORY = ffi.wasmtime_memory_get_callback_t(_get_memory)


def _grow_memory(env: int, new_size: int) -> int:
    try:
        mapping: _Mapping = _objects[env]
        budget = mapping.budget
        if new_size > mapping.capacity or budget.used + new_size - mapping.size > budget.limit:
            return budget.refuse()
        if _libc.mprotect(mapping.base + mapping.size, new_size - mapping.size, _RW) != 0:
            return _error(f"mprotect failed: errno {ctypes.get_errno()}")
        budget.used += new_size - mapping.size
        mapping.size = new_size
        return 0
    except Exception as err:  # noqa: BLE001 - an exception must not cross into wasmtime
        return _error(f"labkit memory creator: {err}")


_GROW_MEMORY = ffi.wasmtime_memory_grow_callback_t(_grow_memory)


def _free_memory(env: int) -> None:
    with _lock:
        mapping: _Mapping | None = _objects.pop(env, None)
    if mapping is not None:
        _libc.munmap(mapping.base, mapping.mapped)
        mapping.budget.used -= mapping.size


_FREE_MEMORY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_free_memory)


def _forget_key(env: int | None) -> None:
    _forget(env)


_FORGET = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_forget_key)


# -- CPU: the ticker and the epoch callback ---------------------------------------------------------------


class _Ticker:
    """One thread bumping the epoch of every CPU-limited engine each :data:`TICK_S`; idle when there is none."""

    def __init__(self) -> None:
        self.engines: dict[int, wasmtime.Engine] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, key: int, engine: wasmtime.Engine) -> None:
        with self._changed:
            self.engines[key] = engine
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wasm-cpu-ticker", daemon=True)
                self._thread.start()
            self._changed.notify()

    def remove(self, key: int) -> None:
        with self._changed:
            self.engines.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self.engines))
                engines = list(self.engines.values())
            for engine in engines:
                engine.increment_epoch()
            time.sleep(TICK_S)


_TICKER = _Ticker()
_EPOCH_CALLBACK_T = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
)
_CONTINUE = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE


class StoreGuard:
    """Holds one container's store to its limits; *killed* is the container's kill event."""

    def __init__(self, limits: Limits, killed: threading.Event, kill: Callable[[], None]) -> None:
        self.limits, self.killed = limits, killed
        self.memory = MemoryBudget(limits.memory_bytes, kill) if limits.memory_bytes is not None else None
        #: seconds the guest was paused for its CPU limit, and CPU seconds its thread used (set when it ends)
        self.throttled_s = self.cpu_s = 0.0
        self._share = (limits.cpu_millis or 0) / 1000
        self._credit = self._share * CPU_PERIOD_S
        self._wall = self._cpu = self._cpu_start = 0.0
        self._key: int | None = None

    @property
    def oom_killed(self) -> bool:
        return self.memory is not None and self.memory.oom_killed

    def engine_config(self, config: wasmtime.Config) -> wasmtime.Config:
        if self.memory is not None:  # wasmrun.engine_config turned copy-on-write memory images off for this
            self.memory.install(config)
        return config

    def attach(self, store: wasmtime.Store, engine: wasmtime.Engine) -> None:
        """On the guest's thread: install the epoch callback on *store* (deadline: the next epoch) and start its
        ticks when CPU-limited."""
        self._key = _register(self)
        ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), _ON_EPOCH, self._key, _FORGET)
        store.set_epoch_deadline(1)
        self._wall, self._cpu = time.monotonic(), time.thread_time()
        self._cpu_start = self._cpu
        if self.limits.cpu_millis is not None:
            _TICKER.add(self._key, engine)

    def detach(self) -> None:
        """On the guest's thread, when the run ends."""
        self.cpu_s = time.thread_time() - self._cpu_start
        if self._key is not None:
            _TICKER.remove(self._key)

    def on_epoch(self) -> bool:
        """On the guest's thread at each epoch deadline: False to end the guest (killed), else throttle.

        CPU time is a budget refilled at the limit's rate and capped at one period's quota, as CFS refills a
        quota each period and does not carry an unused one over; a spent budget is slept off, so the guest's
        average over any stretch longer than a period is the limit.
        """
        if self.killed.is_set():
            return False
        if self.limits.cpu_millis is None:
            return True
        wall, cpu = time.monotonic(), time.thread_time()
        refill = (wall - self._wall) * self._share
        self._credit = min(self._credit + refill, self._share * CPU_PERIOD_S) - (cpu - self._cpu)
        self._wall, self._cpu = wall, cpu
        if self._credit < 0:
            pause = -self._credit / self._share
            self.throttled_s += pause
            if self.killed.wait(pause):
                return False
            self._credit, self._wall, self._cpu = 0.0, time.monotonic(), time.thread_time()
        return True


def _on_epoch(_context: Any, env: int, delta: Any, kind: Any) -> int:
    guard: StoreGuard | None = _objects.get(env)
    if guard is None or not guard.on_epoch():
        return _error("labkit: the container was killed")
    delta[0], kind[0] = 1, _CONTINUE
    return 0


_ON_EPOCH = _EPOCH_CALLBACK_T(_on_epoch)
