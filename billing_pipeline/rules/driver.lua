-- Trusted side of the charge engine (runs in LuaJIT with the JIT on).
--
-- Rule code never sees anything defined here except `charge`, `ctx`, the event tables, the
-- budget counter `__tick` and the sandbox environment built by `make_env`. This file uses
-- `ffi`, `debug` and `jit`; rule code cannot reach them: it is loaded with
-- `load(src, name, "t", env)` where env only holds whitelisted, read-only copies. Rule code
-- runs JIT-compiled like the rest; its source was instrumented (instrument.py) with calls of
-- `__tick` at every loop body, function entry and goto, which is what enforces the budget.
local ffi = require("ffi")
local bit = require("bit")
local jit = require("jit")

local band, rshift = bit.band, bit.rshift
local ffi_string, ffi_cast = ffi.string, ffi.cast
local xpcall = xpcall
local type, error, pcall, tostring, tonumber = type, error, pcall, tostring, tonumber
local setmetatable, getmetatable, rawset, next = setmetatable, getmetatable, rawset, next
local floor, huge = math.floor, math.huge
local str_find, str_sub, str_byte, str_format = string.find, string.sub, string.byte, string.format
local concat = table.concat
local getinfo = debug.getinfo
local collect = collectgarbage
local tnew = require("table.new")

ffi.cdef([[
typedef struct { int32_t len; int32_t prefix; int32_t buf; int32_t off; } bp_view;
void *memchr(const void *s, int c, size_t n);
double strtod(const char *nptr, char **endptr);
int64_t strtoll(const char *nptr, char **endptr, int base);
void *realloc(void *ptr, size_t size);
int memcmp(const void *s1, const void *s2, size_t n);
void free(void *ptr);
void *malloc(size_t size);
void *calloc(size_t nmemb, size_t size);
typedef struct { uint64_t cur, max; } bp_rlimit;
int getrlimit(int resource, bp_rlimit *rlim);
int setrlimit(int resource, const bp_rlimit *rlim);
int ftruncate(int fd, int64_t length);
void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset);
int munmap(void *addr, size_t length);
]])

-- The worker's address-space limit is the memory cap (lua.py's MemoryCap); memory the driver
-- mallocs for charge lines raises it by its size, so only rule code spends the cap.
local RLIMIT_AS, RLIM_INFINITY = 9, ffi.cast("uint64_t", -1) -- RLIMIT_AS: set by new_batch
local rlim = ffi.new("bp_rlimit")
local function allow_more(bytes)
  if ffi.C.getrlimit(RLIMIT_AS, rlim) == 0 and rlim.cur ~= RLIM_INFINITY then
    local cur = rlim.cur + bytes
    rlim.cur = cur < rlim.max and cur or rlim.max
    ffi.C.setrlimit(RLIMIT_AS, rlim)
  end
end

local u8p = ffi.typeof("const uint8_t *")
local viewp = ffi.typeof("const bp_view *")
local i32p = ffi.typeof("const int32_t *")
local i64p = ffi.typeof("const int64_t *")
local vi32p = ffi.typeof("volatile int32_t *")
local i32w = ffi.typeof("int32_t *")

local M = {}

---------------------------------------------------------------------------------------------
-- Sandbox
---------------------------------------------------------------------------------------------

local protected = setmetatable({}, { __mode = "k" })

-- Budget state, shared by the counter (below) and the sandbox's pcall wrappers.
local budget, max_budget, exceeded, budget_text = 0, 0, false, ""

local function location(info)
  if info and info.currentline and info.currentline > 0 then
    return str_sub(info.source, 1, 1) == "@" and str_sub(info.source, 2) or info.short_src, info.currentline
  end
  return nil, nil
end

local function over_budget()
  exceeded = true
  local file, line = location(getinfo(3, "Sl"))
  if file then
    error(str_format("%s:%d: instruction budget exceeded (%s)", file, line, budget_text), 0)
  end
  error("instruction budget exceeded (" .. budget_text .. ")", 0)
end

-- The budget counter the instrumented rule source calls (instrument.py): `n` is the
-- estimated instructions of the block being entered. Inlined into the rule's trace by the
-- JIT, it costs a subtraction and a compare. A weight that is not > 0 (rule code calling the
-- counter itself) counts as 1, so the budget can only go down.
local function tick(n)
  local b = budget - (n > 0 and n or 1)
  budget = b
  if b < 0 then
    over_budget()
  end
end

-- A rule must not swallow a budget error: once the budget is gone, every catch re-raises.
local function rethrow_if_exceeded(ok, ...)
  if not ok and exceeded then
    error((...), 0)
  end
  return ok, ...
end

local function readonly_error(_, key)
  error("cannot assign '" .. tostring(key) .. "': globals and libraries are read-only", 2)
end

-- A read-only view of `source`: reads go through, writes raise, the metatable is hidden.
local function readonly(source)
  local proxy = setmetatable({}, { __index = source, __newindex = readonly_error, __metatable = false })
  protected[proxy] = true
  return proxy
end

local function copy_fields(src, names)
  local t = {}
  for _, name in ipairs(names) do
    t[name] = src[name]
  end
  return t
end

local SAFE_STRING = {
  "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower", "match", "rep",
  "reverse", "sub", "upper",
}
local SAFE_TABLE = { "concat", "insert", "maxn", "remove", "sort" }
local SAFE_MATH = {
  "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "cosh", "deg", "exp", "floor",
  "fmod", "frexp", "huge", "ldexp", "log", "log10", "max", "min", "modf", "pi", "pow", "rad",
  "sin", "sinh", "sqrt", "tan", "tanh",
}
local SAFE_BIT = { "band", "bnot", "bor", "bswap", "bxor", "lshift", "rol", "ror", "rshift", "arshift", "tobit", "tohex" }
-- The budget counter is one per runtime, so code in coroutines counts against the handler's budget.
local SAFE_COROUTINE = { "create", "resume", "running", "status", "wrap", "yield" }

local sandbox_string = readonly(copy_fields(string, SAFE_STRING))

-- ("").dump and getmetatable("").__index would otherwise reach the real string library.
do
  local mt = getmetatable("")
  mt.__index = sandbox_string
  mt.__metatable = false
end

---------------------------------------------------------------------------------------------
-- Lazy tables: `e` and payload objects whose unique strings are made only when read
---------------------------------------------------------------------------------------------
-- Interning a new unique string costs LuaJIT ~250 ns, and an event carries 3-5 of them
-- (event_id, occurred_at, order ids, tracking numbers) that most handlers never read. So
-- `e` holds only its payload and gets every other field from the columns on read (__index,
-- not stored: the same value comes back each time; the shared strings too, which keeps `e`
-- a table of two keys instead of seven: ~10% of the worker's time, less to allocate and
-- collect); payload objects keep their strings as pending references into the payload
-- text (see the shape decoders below). A lazy table carries hidden keys (private tables no
-- rule can name) and a metatable that rule code cannot reach. Whatever could tell a lazy
-- table from a filled one fills it first (`materialize`): a write to an absent key
-- (__newindex) and the sandbox's next, pairs, rawget, rawset, getmetatable and setmetatable,
-- so rules see exactly the tables the eager decoder would give.
local dgetmetatable, dsetmetatable = debug.getmetatable, debug.setmetatable
local ROW = {} -- hidden key of a lazy table: the event's row
local col_pay -- the payload column of the batch being run (set by new_batch)
-- The fields of `e` other than payload, made from the row on read: name -> function(row)
-- (set by new_batch). Rules mostly read only the payload, and a table of two keys is a
-- third of the allocation of one with all seven.
local E_FIELDS = {}
local E_NAMES = { "event_id", "event_type", "client_id", "warehouse_id", "occurred_at", "activity_date" }
local E_MT, P_MT
local LAZY = {}
-- A pending payload string is stored under a hidden key (PENDING_KEY[name]) as its position
-- in the row's payload text: offset * POS_SCALE + length.
local POS_SCALE = 2 ^ 21
local PENDING_KEY, PENDING_NAME = {}, {}
local function pending_key(name)
  local key = PENDING_KEY[name]
  if key == nil then
    key = {}
    PENDING_KEY[name], PENDING_NAME[key] = key, name
  end
  return key
end

local function materialize(t)
  local mt = dgetmetatable(t)
  local r = rawget(t, ROW)
  if mt == E_MT then
    rawset(t, ROW, nil)
    dsetmetatable(t, nil)
    if r then
      for _, name in ipairs(E_NAMES) do
        if rawget(t, name) == nil then
          rawset(t, name, E_FIELDS[name](r))
        end
      end
    end
  elseif mt == P_MT then
    local refs, n = {}, 0
    for k in next, t do
      if PENDING_NAME[k] then
        n = n + 1
        refs[n] = k
      end
    end
    local base = col_pay(r)
    rawset(t, ROW, nil)
    dsetmetatable(t, nil)
    for j = 1, n do
      local ref = refs[j]
      local pos = rawget(t, ref)
      rawset(t, ref, nil)
      local name = PENDING_NAME[ref]
      if rawget(t, name) == nil then
        rawset(t, name, ffi_string(base + floor(pos / POS_SCALE), pos % POS_SCALE))
      end
    end
  end
end

local function lazy_newindex(t, k, v)
  if k == nil then
    error("table index is nil", 2)
  elseif k ~= k then
    error("table index is NaN", 2)
  end
  materialize(t)
  rawset(t, k, v)
end

E_MT = {
  __index = function(t, k)
    local field = E_FIELDS[k]
    if field ~= nil then
      local r = rawget(t, ROW)
      if r then
        return field(r)
      end
    end
    return nil
  end,
  __newindex = lazy_newindex,
  __metatable = false,
}
LAZY[E_MT] = true

P_MT = {
  __index = function(t, k)
    local key = PENDING_KEY[k]
    if key ~= nil then
      local pos = rawget(t, key)
      if pos then
        local base = col_pay(rawget(t, ROW))
        return ffi_string(base + floor(pos / POS_SCALE), pos % POS_SCALE)
      end
    end
    return nil
  end,
  __newindex = lazy_newindex,
  __metatable = false,
}
LAZY[P_MT] = true

local function type_error(fname, v)
  return str_format("bad argument #1 to '%s' (table expected, got %s)", fname, type(v))
end

local function safe_next(t, k)
  if type(t) ~= "table" then
    error(type_error("next", t), 2)
  end
  if LAZY[dgetmetatable(t)] then
    materialize(t)
  end
  return next(t, k)
end

local function safe_pairs(t)
  if type(t) ~= "table" then
    error(type_error("pairs", t), 2)
  end
  if LAZY[dgetmetatable(t)] then
    materialize(t)
  end
  return safe_next, t, nil
end

local function safe_rawget(t, k)
  if type(t) ~= "table" then
    error(type_error("rawget", t), 2)
  end
  if LAZY[dgetmetatable(t)] then
    materialize(t)
  end
  return rawget(t, k)
end

local function safe_getmetatable(...)
  local v = ...
  if select("#", ...) == 0 then
    error("bad argument #1 to 'getmetatable' (value expected)", 2)
  end
  if type(v) == "table" and LAZY[dgetmetatable(v)] then
    materialize(v)
  end
  return getmetatable(v)
end

local function safe_setmetatable(t, mt)
  if type(t) ~= "table" then
    error(type_error("setmetatable", t), 2)
  end
  if LAZY[dgetmetatable(t)] then
    materialize(t)
  end
  return setmetatable(t, mt)
end

local function safe_rawset(t, k, v)
  if type(t) ~= "table" then
    error(type_error("rawset", t), 2)
  end
  if protected[t] then
    error("cannot rawset on a read-only table", 2)
  end
  if LAZY[dgetmetatable(t)] then
    materialize(t)
  end
  return rawset(t, k, v)
end

local function deep_copy(v)
  if type(v) ~= "table" then
    return v
  end
  local t = {}
  for k, x in next, v do
    t[k] = deep_copy(x)
  end
  return t
end

-- What deep_copy(v) makes for a small flat table (at most COPY_UNROLL keys, no table value),
-- without a loop: the same keys and values inserted in the same (`next`) order into a fresh
-- table, so a copy is the same table to the last slot, and so has the same `pairs` order. A
-- handler reads ctx.params per event, and deep_copy's loop inside the event loop's trace
-- made LuaJIT abort it ("inner loop in root trace"): the shipped heavy_parcel rules ran ~40 %
-- slower than the default ones for reading `ctx.params.heavy_lb` once an event.
local COPY_UNROLL = 8
local function copy_flat(K, V, n)
  local t = {}
  if n >= 1 then t[K[1]] = V[1] end
  if n >= 2 then t[K[2]] = V[2] end
  if n >= 3 then t[K[3]] = V[3] end
  if n >= 4 then t[K[4]] = V[4] end
  if n >= 5 then t[K[5]] = V[5] end
  if n >= 6 then t[K[6]] = V[6] end
  if n >= 7 then t[K[7]] = V[7] end
  if n >= 8 then t[K[8]] = V[8] end
  return t
end

local function copier(v)
  local K, V, n = {}, {}, 0
  for k, x in next, v do
    n = n + 1
    if n > COPY_UNROLL or type(x) == "table" then
      return function()
        return deep_copy(v)
      end
    end
    K[n], V[n] = k, x
  end
  return function()
    return copy_flat(K, V, n)
  end
end

-- Compiled module chunks by chunk name and source, kept for the runtime's life. A runtime
-- serves the batches of an engine worker one after another (batch.py), each in a fresh
-- environment: running the same chunk again there makes fresh module state (new tables and
-- closures: nothing a rule keeps reaches the next batch) from the same function prototypes,
-- whose compiled traces LuaJIT keeps. Loading the source again would make new prototypes
-- and compile everything again, which cost more than the Lua of a small batch (issue 7).
local CHUNKS = {}

-- Per module chunk name, the functions of its source that cannot keep their first argument's
-- tables: "linedefined:lastlinedefined" -> the locals they hand it to (confined.py), for the
-- chunk last required.
local CONFINED = {}

-- Builds the environment for one rules file: `modules` maps module names to
-- {source=, chunkname=, confined=} (or {refused=reason}); returns env and the `require` cache.
local function make_env(modules, on_load)
  local table_lib = copy_fields(table, SAFE_TABLE)
  table_lib.unpack = unpack
  local base = {
    assert = assert, error = error, ipairs = ipairs, next = safe_next, pairs = safe_pairs,
    pcall = pcall, xpcall = xpcall, select = select, tonumber = tonumber, tostring = tostring,
    type = type, unpack = unpack, rawequal = rawequal, rawget = safe_rawget, rawset = safe_rawset,
    setmetatable = safe_setmetatable, getmetatable = safe_getmetatable, _VERSION = _VERSION,
    string = sandbox_string, __tick = tick,
    table = readonly(table_lib),
    math = readonly(copy_fields(math, SAFE_MATH)),
    bit = readonly(copy_fields(bit, SAFE_BIT)),
  }
  local env = readonly(base)
  base._G = env
  base.pcall = function(f, ...)
    return rethrow_if_exceeded(pcall(f, ...))
  end
  base.xpcall = function(f, handler, ...)
    return rethrow_if_exceeded(xpcall(f, handler, ...))
  end
  local co = copy_fields(coroutine, SAFE_COROUTINE)
  local resume = coroutine.resume
  co.resume = function(thread, ...)
    return rethrow_if_exceeded(resume(thread, ...))
  end
  base.coroutine = readonly(co)
  local cache, loading = {}, {}
  base.require = function(name)
    if type(name) ~= "string" then
      error("require: module name must be a string", 2)
    end
    local cached = cache[name]
    if cached ~= nil then
      return cached
    end
    if loading[name] then
      error("require: circular require of '" .. name .. "'", 2)
    end
    local mod = modules[name]
    if mod == nil then
      error("require: module '" .. name .. "' not found (lib.NAME or rules.NAME, named by a string literal)", 2)
    end
    if mod.refused then
      error("require: module '" .. name .. "' refused: " .. mod.refused, 2)
    end
    if mod.error then
      error(mod.error, 0)
    end
    CONFINED[mod.chunkname] = mod.confined
    local key = mod.chunkname .. "\0" .. mod.source
    local fn = CHUNKS[key]
    if fn == nil then
      local err
      fn, err = load(mod.source, mod.chunkname, "t", env)
      if not fn then
        error(err, 0)
      end
      CHUNKS[key] = fn
    else
      setfenv(fn, env)
    end
    loading[name] = true
    local ok, result = pcall(fn, name)
    loading[name] = nil
    if not ok then
      error(result, 0)
    end
    if result == nil then
      result = true
    end
    cache[name] = result
    return result
  end
  return env, base.require
end

---------------------------------------------------------------------------------------------
-- Column readers over Arrow C data exported by polars (see arrow.py)
---------------------------------------------------------------------------------------------

-- A string column: Arrow "vu" (string view) layout.
local function view_column(desc)
  local views = ffi_cast(viewp, desc.views) + desc.offset
  local bufs = {}
  for i = 1, #desc.bufs do
    bufs[i - 1] = ffi_cast(u8p, desc.bufs[i])
  end
  -- returns pointer, length of row i (0-based)
  return function(i)
    local v = views + i
    local len = v.len
    if len <= 12 then
      return ffi_cast(u8p, v) + 4, len
    end
    return bufs[v.buf] + v.off, len
  end
end

local function int_column(desc)
  return ffi_cast(i32p, desc.data) + desc.offset
end

---------------------------------------------------------------------------------------------
-- JSON (canonical payload text) to Lua tables; JIT-compiled, trusted.
---------------------------------------------------------------------------------------------

local parse_value

local function utf8_char(cp)
  if cp < 0x80 then
    return string.char(cp)
  elseif cp < 0x800 then
    return string.char(0xC0 + rshift(cp, 6), 0x80 + band(cp, 0x3F))
  elseif cp < 0x10000 then
    return string.char(0xE0 + rshift(cp, 12), 0x80 + band(rshift(cp, 6), 0x3F), 0x80 + band(cp, 0x3F))
  end
  return string.char(
    0xF0 + rshift(cp, 18), 0x80 + band(rshift(cp, 12), 0x3F),
    0x80 + band(rshift(cp, 6), 0x3F), 0x80 + band(cp, 0x3F)
  )
end

local ESCAPES = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n", [114] = "\r", [116] = "\t" }

local function hex4(p, i)
  return tonumber(ffi_string(p + i, 4), 16)
end

-- Slow path for strings with escapes; i is just after the opening quote.
local function parse_escaped(p, i, n)
  local parts, np = {}, 0
  local start = i
  while i < n do
    local c = p[i]
    if c == 34 then
      np = np + 1
      parts[np] = ffi_string(p + start, i - start)
      return concat(parts), i + 1
    elseif c == 92 then
      np = np + 1
      parts[np] = ffi_string(p + start, i - start)
      local esc = p[i + 1]
      if esc == 117 then
        local cp = hex4(p, i + 2)
        i = i + 6
        if cp >= 0xD800 and cp <= 0xDBFF and p[i] == 92 and p[i + 1] == 117 then
          local lo = hex4(p, i + 2)
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          i = i + 6
        end
        np = np + 1
        parts[np] = utf8_char(cp)
      else
        np = np + 1
        parts[np] = ESCAPES[esc] or ""
        i = i + 2
      end
      start = i
    else
      i = i + 1
    end
  end
  error("payload: unterminated string")
end

-- memchr and strtod do the byte scanning: byte loops in Lua would be inner loops that
-- LuaJIT refuses to compile inside the per-event trace ("inner loop in root trace").
local C = ffi.C
local endptr = ffi.new("char *[1]")

local function parse_string(p, i, n)
  local q = C.memchr(p + i, 34, n - i)
  if q == nil then
    error("payload: unterminated string")
  end
  local len = ffi_cast(u8p, q) - (p + i)
  if C.memchr(p + i, 92, len) == nil then
    return ffi_string(p + i, len), i + len + 1
  end
  return parse_escaped(p, i, n)
end

local function skip_ws(p, i)
  local c = p[i]
  while c == 32 or c == 9 or c == 10 or c == 13 do
    i = i + 1
    c = p[i]
  end
  return i
end

-- strtod is correctly rounded, as Python's float() is; JSON numbers are always in the C locale
local function parse_number(p, i, n)
  local v = C.strtod(ffi_cast("const char *", p + i), endptr)
  local stop = ffi_cast(u8p, endptr[0]) - p
  if stop <= i then
    error("payload: bad number")
  end
  return v, stop
end

local function parse_object(p, i, n)
  local t = {}
  i = skip_ws(p, i)
  if p[i] == 125 then
    return t, i + 1
  end
  while true do
    i = skip_ws(p, i)
    local key
    key, i = parse_string(p, i + 1, n)
    i = skip_ws(p, i) + 1 -- ':'
    local v
    v, i = parse_value(p, skip_ws(p, i), n)
    if v ~= nil then
      t[key] = v
    end
    i = skip_ws(p, i)
    local c = p[i]
    i = i + 1
    if c == 125 then
      return t, i
    elseif c ~= 44 then
      error("payload: bad object")
    end
  end
end

local function parse_array(p, i, n)
  local t = {}
  i = skip_ws(p, i)
  if p[i] == 93 then
    return t, i + 1
  end
  local k = 0
  while true do
    local v
    k = k + 1
    v, i = parse_value(p, skip_ws(p, i), n)
    if v ~= nil then
      t[k] = v
    end
    i = skip_ws(p, i)
    local c = p[i]
    i = i + 1
    if c == 93 then
      return t, i
    elseif c ~= 44 then
      error("payload: bad array")
    end
  end
end

parse_value = function(p, i, n)
  local c = p[i]
  if c == 34 then
    return parse_string(p, i + 1, n)
  elseif c == 123 then
    return parse_object(p, i + 1, n)
  elseif c == 91 then
    return parse_array(p, i + 1, n)
  elseif c == 116 then
    return true, i + 4
  elseif c == 102 then
    return false, i + 5
  elseif c == 110 then
    return nil, i + 4
  end
  return parse_number(p, i, n)
end

local function parse_payload(ptr, len)
  local v = parse_value(ptr, skip_ws(ptr, 0), len)
  if type(v) ~= "table" then
    return {}
  end
  return v
end
M.parse_payload = function(s)
  return parse_payload(ffi_cast(u8p, s), #s)
end

-- Shape-compiled decoding. The generic decoder above loops over keys and elements, and a
-- loop inside the per-event loop keeps LuaJIT from compiling it (it aborts the trace with
-- "inner loop in root trace" and ends up blacklisting the event loop). But the payloads of
-- one event type nearly always have the same keys in the same order (canonical JSON), so
-- per event type the driver learns that shape from a payload and generates a decoder for
-- it: straight-line code (arrays unrolled up to ARRAY_UNROLL elements) that checks each key's
-- bytes in place and parses each scalar without a loop. A payload that does not match (other
-- keys, whitespace, escapes in a string, a longer array) makes it return nil, and the event
-- is decoded by the generic decoder instead (and may teach a further shape), so the result
-- is always what the generic decoder gives.

local FAIL = {} -- a scalar position held something else (object, array, escaped string)
local ARRAY_UNROLL, MAX_SHAPES, MAX_SHAPE_NODES = 6, 4, 200

-- A scalar without loops: a string without escapes, a number, true, false, null.
local function parse_scalar(p, i, n)
  local c = p[i]
  if c == 34 then
    i = i + 1
    local q = C.memchr(p + i, 34, n - i)
    if q == nil then
      return FAIL, i
    end
    local len = tonumber(ffi_cast(u8p, q) - (p + i))
    if C.memchr(p + i, 92, len) ~= nil then
      return FAIL, i
    end
    return ffi_string(p + i, len), i + len + 1
  elseif c == 116 then
    return true, i + 4
  elseif c == 102 then
    return false, i + 5
  elseif c == 110 then
    return nil, i + 4
  elseif c == 123 or c == 91 then
    return FAIL, i
  end
  -- Most payload numbers are short integers, and glibc's strtod costs several times what
  -- strtoll does for them. strtoll's value is taken only when it is the whole number: at
  -- most 15 characters (so below 2^53: the double strtod would give), ended by what ends a
  -- JSON value inside an object or array (not '.', 'e', 'x', ...), and not a negative zero;
  -- anything else is read by strtod as before.
  local s = ffi_cast("const char *", p + i)
  local w = C.strtoll(s, endptr, 10)
  local stop = tonumber(ffi_cast(u8p, endptr[0]) - p)
  if stop > i and stop - i <= 15 and stop < n then
    local e = p[stop]
    if (e == 44 or e == 125 or e == 93) and (w ~= 0 or c ~= 45) then
      return tonumber(w), stop
    end
  end
  local v = C.strtod(s, endptr)
  stop = tonumber(ffi_cast(u8p, endptr[0]) - p)
  if stop <= i or stop > n then
    return FAIL, i
  end
  return v, stop
end

-- As parse_scalar, for an object's field: a string comes back as its position (a number,
-- see POS_SCALE) and `true` as third value, to be stored as a pending string.
local function pending_scalar(p, i, n)
  if p[i] == 34 then
    i = i + 1
    local q = C.memchr(p + i, 34, n - i)
    if q == nil then
      return FAIL, i
    end
    local len = tonumber(ffi_cast(u8p, q) - (p + i))
    if len >= POS_SCALE or C.memchr(p + i, 92, len) ~= nil then
      return FAIL, i
    end
    return i * POS_SCALE + len, i + len + 1, true
  end
  return parse_scalar(p, i, n)
end

-- parse_scalar and pending_scalar for the generated decoders, which refuse (return nil for)
-- any payload with a backslash in it first, so a string ends at the next quote: one C call
-- per string instead of two (fewer C calls: a smaller per-event trace, see bytes_equal).
local function clean_scalar(p, i, n)
  local c = p[i]
  if c == 34 then
    i = i + 1
    local q = C.memchr(p + i, 34, n - i)
    if q == nil then
      return FAIL, i
    end
    local len = tonumber(ffi_cast(u8p, q) - (p + i))
    return ffi_string(p + i, len), i + len + 1
  end
  return parse_scalar(p, i, n)
end

local function clean_pending(p, i, n)
  if p[i] == 34 then
    i = i + 1
    local q = C.memchr(p + i, 34, n - i)
    if q == nil then
      return FAIL, i
    end
    local len = tonumber(ffi_cast(u8p, q) - (p + i))
    if len >= POS_SCALE then
      return FAIL, i
    end
    return i * POS_SCALE + len, i + len + 1, true
  end
  return parse_scalar(p, i, n)
end

-- Generated code that is true when the bytes at p + `at` are `text`: int32 loads of 4 bytes at
-- a time (constants read from the text's own bytes, so any byte order), then single bytes,
-- instead of a memcmp call per key: C calls are what fills a trace's spill slots.
local function bytes_equal(text, at)
  local buf = ffi.new("uint8_t[?]", #text + 4)
  ffi.copy(buf, text, #text)
  local parts, k = {}, 0
  while k + 4 <= #text do
    local word = ffi_cast(i32p, buf + k)[0]
    parts[#parts + 1] = str_format("cast(i32p, p + %s + %d)[0] == %d", at, k, word)
    k = k + 4
  end
  while k < #text do
    parts[#parts + 1] = str_format("p[%s + %d] == %d", at, k, buf[k])
    k = k + 1
  end
  return #parts > 0 and concat(parts, " and ") or "true"
end

-- The shape of the value at i: {o = keys, v = shapes} | {a = element shape} | false (scalar).
local function shape_of(p, i, n, budget)
  budget[1] = budget[1] - 1
  local c = p[i]
  if c == 123 then
    local keys, vals = {}, {}
    i = i + 1
    if p[i] == 125 then
      return { o = keys, v = vals }, i + 1
    end
    while true do
      if p[i] ~= 34 then
        return nil
      end
      local key
      key, i = parse_scalar(p, i, n)
      if type(key) ~= "string" or p[i] ~= 58 then
        return nil
      end
      local shape
      shape, i = shape_of(p, i + 1, n, budget)
      if shape == nil then
        return nil
      end
      keys[#keys + 1], vals[#vals + 1] = key, shape
      c = p[i]
      i = i + 1
      if c == 125 then
        return { o = keys, v = vals }, i
      elseif c ~= 44 then
        return nil
      end
    end
  elseif c == 91 then
    i = i + 1
    if p[i] == 93 then
      return { a = false }, i + 1
    end
    local first
    while true do
      local shape
      shape, i = shape_of(p, i, n, budget)
      if shape == nil then
        return nil
      end
      first = first == nil and shape or first
      c = p[i]
      i = i + 1
      if c == 93 then
        return { a = first }, i
      elseif c ~= 44 then
        return nil
      end
    end
  end
  local v
  v, i = parse_scalar(p, i, n)
  if v == FAIL then
    return nil
  end
  return false, i
end

local function gen_value(shape, out, var, depth, refs)
  local function emit(line)
    out[#out + 1] = string.rep("  ", depth) .. line
  end
  if shape == false then
    emit(str_format("local %s; %s, i = scalar(p, i, n)", var, var))
    emit(str_format("if %s == FAIL then return nil end", var))
  elseif shape.o then
    local keys = shape.o
    emit(str_format("if p[i] ~= 123 then return nil end"))
    -- The payload itself may be the last event's table, refilled (`t0`, see new_decoder):
    -- its stores are rawset, as it carries P_MT, whose __newindex would fill it.
    local top = depth == 1
    if top then
      emit(str_format("local %s = t0", var))
      emit(str_format("if %s == nil then %s = tnew(0, %d) end", var, var, #keys + 1))
    else
      emit(str_format("local %s = tnew(0, %d)", var, #keys + 1))
    end
    -- stored at once (see ESCAPE)
    emit(str_format("ESCAPE[1] = %s", var))
    emit(str_format("rawset(%s, ROW, row)", var))
    emit("i = i + 1")
    if #keys == 0 then
      emit("if p[i] ~= 125 then return nil end")
    end
    for k, key in ipairs(keys) do
      local lit = str_format("%q", key)
      emit(str_format("if i + %d > n or p[i] ~= 34 or not (%s) or p[i + %d] ~= 34 or p[i + %d] ~= 58 then return nil end",
        #key + 3, bytes_equal(key, "i + 1"), #key + 1, #key + 2))
      emit(str_format("i = i + %d", #key + 3))
      local child = "v" .. (depth + 1)
      emit("do")
      if shape.v[k] == false then
        -- a string field stays pending (hidden key R<n>, see P_MT); other scalars are stored
        refs[#refs + 1] = key
        emit(str_format("  local %s, s; %s, i, s = pscalar(p, i, n)", child, child))
        emit(str_format("  if %s == FAIL then return nil end", child))
        if top then
          -- a refilled table may hold this field the other way from the last event (a
          -- string then, a number now): the other key is cleared
          emit(str_format(
            "  if s then rawset(%s, R%d, %s); if t0 then rawset(%s, %s, nil) end"
              .. " else rawset(%s, %s, %s); if t0 then rawset(%s, R%d, nil) end end",
            var, #refs, child, var, lit, var, lit, child, var, #refs))
        else
          emit(str_format("  if s then %s[R%d] = %s else %s[%s] = %s end", var, #refs, child, var, lit, child))
        end
      else
        gen_value(shape.v[k], out, child, depth + 1, refs)
        emit(str_format("  rawset(%s, %s, %s)", var, lit, child))
      end
      emit("end")
      emit(str_format("if p[i] ~= %d then return nil end", k < #keys and 44 or 125))
      if k < #keys then
        emit("i = i + 1")
      end
    end
    emit("i = i + 1")
    if top then
      emit(str_format("if t0 == nil then setmt(%s, P_MT) end", var))
    else
      emit(str_format("setmt(%s, P_MT)", var))
    end
  else
    emit("if p[i] ~= 91 then return nil end")
    emit(str_format("local %s = {}", var))
    emit(str_format("ESCAPE[1] = %s", var))
    emit("i = i + 1")
    emit("if p[i] == 93 then i = i + 1 else")
    local elem = shape.a
    if elem == nil then
      elem = false
    end
    for k = 1, ARRAY_UNROLL do
      if k > 1 then
        emit(str_format("if p[i] == 44 then i = i + 1"))
      end
      local child = "v" .. (depth + 1)
      emit("do")
      gen_value(elem, out, child, depth + 1, refs)
      emit(str_format("  %s[%d] = %s", var, k, child))
      emit("end")
    end
    emit("if p[i] == 44 then return nil end")
    for _ = 2, ARRAY_UNROLL do
      emit("end")
    end
    emit("if p[i] ~= 93 then return nil end")
    emit("i = i + 1")
    emit("end")
  end
end

-- Each table a generated decoder makes is stored here as soon as it is made. Otherwise
-- LuaJIT may sink the allocation to the end of the trace and keep every field value alive
-- until then, across the decoder's C calls: register pressure of the kind that made the
-- traces of the larger shapes fail with "too many spill slots" (see new_batch's "-loop").
local ESCAPE = {}

-- A decoder for the shape of the payload at p (an object), or nil when it has none worth one.
local function compile_shape(p, n)
  local budget = { MAX_SHAPE_NODES }
  local shape, stop = shape_of(p, 0, n, budget)
  if not shape or not shape.o or stop ~= n or budget[1] < 0 then
    return nil
  end
  local body, refs = {}, {}
  gen_value(shape, body, "t", 1, refs)
  local out = {
    "local tnew, memchr, cast, i32p, scalar, pscalar, FAIL, ROW, P_MT, setmt, refs, ESCAPE, rawset = ...",
  }
  for k = 1, #refs do
    out[#out + 1] = str_format("local R%d = refs[%d]", k, k)
  end
  out[#out + 1] = "return function(p, n, row, t0)"
  out[#out + 1] = "if memchr(p, 92, n) ~= nil then return nil end -- escapes: the generic decoder"
  out[#out + 1] = "local i = 0"
  for _, line in ipairs(body) do
    out[#out + 1] = line
  end
  out[#out + 1] = "  if i ~= n then return nil end"
  out[#out + 1] = "  return t"
  out[#out + 1] = "end"
  for k = 1, #refs do
    refs[k] = pending_key(refs[k])
  end
  local fn = assert(load(concat(out, "\n"), "=payload shape", "t", {}))
  return fn(tnew, C.memchr, ffi_cast, i32p, clean_scalar, clean_pending, FAIL, ROW, P_MT, setmetatable, refs, ESCAPE, rawset)
end

-- Per event type: a decoder trying the learnt shapes, falling back to the generic one.
-- With `refill` (the handler is confined, see confined.py) the first shape's decoder refills
-- the table it made for the last such event, unless that table was filled since (a write to
-- an absent key, pairs, ...: `materialize` took its ROW): two tables fewer per event to make
-- and collect. The other shapes and the generic decoder always make fresh tables.
local function new_decoder()
  local shapes, n_shapes, tries = {}, 0, 0
  local function slow(p, n)
    local t = parse_payload(p, n)
    if n_shapes < MAX_SHAPES and tries < 64 then
      tries = tries + 1
      local fn = compile_shape(p, n)
      if fn then
        n_shapes = n_shapes + 1
        shapes[n_shapes] = fn
      end
    end
    return t
  end
  local kept = nil
  return function(p, n, row, refill)
    local f = shapes[1]
    if f then
      local t0 = nil
      if refill and kept ~= nil and rawget(kept, ROW) ~= nil then
        t0 = kept
      end
      local t = f(p, n, row, t0)
      if t then
        if refill then
          kept = t
        end
        return t
      end
      for k = 2, n_shapes do
        t = shapes[k](p, n, row)
        if t then
          return t
        end
      end
    end
    return slow(p, n)
  end
end

---------------------------------------------------------------------------------------------
-- Loading a rules file
---------------------------------------------------------------------------------------------

local function set_budget(instructions)
  max_budget = instructions
  budget_text = tostring(instructions) .. " instructions"
end

local function with_budget(fn, ...)
  budget, exceeded = max_budget, false
  return pcall(fn, ...)
end

local function message_of(err)
  if type(err) == "string" then
    return err
  end
  local ok, text = pcall(tostring, err)
  return ok and type(text) == "string" and text or "error object of type " .. type(err)
end

-- Loads `rules_name` ("rules.X") in a fresh sandbox; returns the rules table or nil, message.
function M.load_rules(modules, rules_name, instructions)
  set_budget(instructions)
  local env, require = make_env(modules)
  local ok, rules = with_budget(require, rules_name)
  if exceeded then
    ok = false
  end
  if not ok then
    collect("collect")
    return nil, message_of(rules)
  end
  if type(rules) ~= "table" then
    return nil, rules_name .. " must return a table keyed by event_type, got " .. type(rules)
  end
  for k, v in next, rules do
    if type(k) == "string" and v ~= false and type(v) ~= "function" then
      return nil, str_format("%s: value for '%s' must be a function or false, got %s", rules_name, k, type(v))
    end
  end
  return rules, nil
end

-- event_type -> "handler" | "false", as parallel arrays sorted by name.
function M.rule_kinds(rules)
  local names = {}
  for k, v in next, rules do
    if type(k) == "string" and (v == false or type(v) == "function") then
      names[#names + 1] = k
    end
  end
  table.sort(names)
  local kinds = {}
  for i, k in ipairs(names) do
    kinds[i] = rules[k] == false and "false" or "handler"
  end
  return names, kinds
end

---------------------------------------------------------------------------------------------
-- Running a batch
---------------------------------------------------------------------------------------------

local CODE_MAX, MEMO_MAX, DEC_MAX = 64, 200, 1e32
-- a whole quantity below this is its own id in the output (the parent's table of them is
-- this long); others are interned
local Q_DIRECT = 65536

local function utf8_len(s)
  local n = 0
  for i = 1, #s do
    local b = str_byte(s, i)
    if b < 0x80 or b >= 0xC0 then
      n = n + 1
    end
  end
  return n
end

local function describe(v)
  if type(v) == "string" then
    return str_format("%q", #v > 40 and str_sub(v, 1, 40) .. "..." or v)
  end
  return type(v) == "number" and tostring(v) or type(v)
end

-- A decimal string as parse_decimal() accepts it; returns nil, why when it is not >= 0 with
-- at most 6 places.
local function check_basis_string(s)
  local sign, int, frac, exp = s:match("^%s*([+-]?)(%d*)%.?(%d*)([eE]?[+-]?%d*)%s*$")
  if not sign or (int == "" and frac == "") or (exp ~= "" and not exp:match("^[eE][+-]?%d+$")) then
    return "not a decimal"
  end
  if not str_find(s, "^%s*[+-]?%d+%.?%d*") and not str_find(s, "^%s*[+-]?%.%d+") then
    return "not a decimal"
  end
  local e = exp ~= "" and tonumber(str_sub(exp, 2)) or 0
  local places = #(frac:gsub("0+$", "")) - e
  if places > 6 then
    return "more than 6 decimal places"
  end
  if sign == "-" and (int .. frac):find("[1-9]") then
    return "negative"
  end
  local v = tonumber(s:match("^%s*[+-]?(.-)%s*$"))
  if not v or v >= DEC_MAX then
    return "too large"
  end
  return nil
end

-- The events order[lo .. hi - 1] of one type. Not one pcall per event: the handler is called
-- directly, so the trace of this loop runs through it (a handler called through pcall is a
-- trace of its own that LuaJIT cannot return from, "NYI: return to lower frame", and after
-- a few such aborts it blacklists the handler and the loop runs interpreted). The caller
-- runs this loop under one pcall and, when a handler fails, resumes after that event
-- (`begin` and `done` record where the loop is). For a confined handler (`refill`, see
-- confined.py: it cannot keep `e` or its payload past the call) one `e` is refilled from
-- event to event, as long as the handler has not filled it (materialize takes its ROW).
local RUN_TYPE_SRC = [==[
local pay, setmetatable, E_MT, ROW, rows, charge, ctxs, vcode, begin, done, decode, h, refill, rawget, rawset = ...
local e = nil
return function(order, lo, hi)
  for j = lo, hi - 1 do
    local i = order[j]
    local p, len = pay(i)
    local payload = decode(p, len, i, refill)
    if refill and e ~= nil and rawget(e, ROW) ~= nil then
      rawset(e, ROW, i)
      rawset(e, "payload", payload)
    else
      e = setmetatable({
        [ROW] = i,
        payload = payload,
      }, E_MT) -- lazy: the other fields are made when read (E_FIELDS)
    end
    local ctx = ctxs[vcode[i]]
    begin(j, rows[i], e, ctx)
    h(e, charge, ctx)
    done()
  end
end
]==]

-- For the runtime's life: the event loops' chunks, per event type and handler, and the
-- payload decoders (their learnt shapes), per event type. Both are trusted code whose
-- results do not depend on what ran before. A loop is per handler too because LuaJIT
-- blacklists a loop whose traces keep aborting (a handler calling what it cannot compile):
-- one client's rules would otherwise leave that type's loop interpreted for the clients
-- after it in the worker.
local RUN_LOOPS, DECODERS = {}, {}
local funcinfo = require("jit.util").funcinfo

-- The handler's function prototype, as a key: the same for the closures each batch makes of
-- it (CHUNKS), different for another rules file's.
local function handler_key(h)
  local info = funcinfo(h)
  if info.source then
    return info.source .. ":" .. info.linedefined
  end
  return "builtin:" .. tostring(info.ffid or info.addr)
end

-- May the event loop refill `e` and its payload for this handler (confined.py)? A confined
-- function may hand its argument to locals of its chunk (fixed once set: confined.py checks
-- that), found here among its upvalues; each must be confined in turn.
local getupvalue = debug.getupvalue
local function confined(h, depth)
  local info = funcinfo(h)
  local spans = info.source and CONFINED[info.source]
  local callees = spans and spans[info.linedefined .. ":" .. info.lastlinedefined]
  if callees == nil then
    return false
  end
  depth = depth or 0
  for _, name in ipairs(callees) do
    if depth >= 8 then -- a chain this long (or a cycle): fresh tables
      return false
    end
    local k, found, value = 1, false, nil
    while true do
      local upname, upvalue = getupvalue(h, k)
      if upname == nil then
        break
      elseif upname == name then
        found, value = true, upvalue
        break
      end
      k = k + 1
    end
    if not found or type(value) ~= "function" or not confined(value, depth + 1) then
      return false
    end
  end
  return true
end

-- deep_copy(params) and what ctx.params hands out for them, as key/value sequences in `next`
-- order (for tests: the two must not differ, order included).
function M.params_copies(params)
  local function walk(t)
    local out = {}
    for k, v in next, t do
      out[#out + 1] = k
      out[#out + 1] = type(v) == "table" and walk(v) or v
    end
    return out
  end
  return walk(deep_copy(params)), walk(copier(params)())
end

-- The event types whose handler gets refilled tables (for tests and diagnostics).
function M.refilled(rules)
  local types = {}
  for k, v in next, rules do
    if type(k) == "string" and type(v) == "function" and confined(v) then
      types[#types + 1] = k
    end
  end
  table.sort(types)
  return types
end

-- Returns a runner for one rules table.
function M.new_batch(rules, spec)
  local client_id = spec.client_id
  local instructions = spec.instructions
  -- A small batch runs interpreted from here on (batch.py's JIT_MIN_EVENTS says why); the
  -- budget ticks are in the rule's source, so they count the same either way.
  local jit_wanted = spec.jit ~= false
  if jit_wanted then
    jit.on() -- the runtime may have run a small batch before
  else
    jit.off()
  end
  RLIMIT_AS = spec.rlimit_as or RLIMIT_AS
  set_budget(instructions)
  local types = spec.types -- [code] = event_type (code 0-based)
  local handlers = {}
  for code, name in next, types do
    local h = rules[name]
    handlers[code] = type(h) == "function" and h or false
  end

  -- Per-version ctx: ctx.params hands out a fresh copy so a handler cannot change what the
  -- next event sees.
  local ctxs = {}
  for v = 0, spec.n_versions do
    local copy_params = copier(spec.params[v] or {})
    ctxs[v] = setmetatable({}, {
      __index = function(_, k)
        if k == "params" then
          return copy_params()
        elseif k == "client_id" then
          return client_id
        end
        return nil
      end,
      __newindex = readonly_error,
      __metatable = false,
    })
  end

  -- Output: one C array (malloc'd, outside the Lua heap), grown by doubling, of the charge
  -- lines in the order the events ran (grouped by type). A handler's charges are rolled
  -- back by resetting n_out when it fails. What one handler call can emit is bounded by its
  -- instruction budget. Each line is 16 bytes of ids: the charge code, the quantity, the
  -- basis and the memo, each an index into a small table of distinct values (a quantity
  -- that is a whole number below Q_DIRECT is its own id). The parent converts each distinct
  -- value to a decimal once and gathers; with the line's event that makes 20 bytes a line in
  -- the shared output (it was 32 with the numbers themselves: 12 bytes a line less to fault
  -- in, here and in the parent, and no per-line decimal conversion there).
  local out_cap, n_out = 0, 0
  local o_line -- 4 int32 per line (one stream for charge() to write and the sort to read)
  local function grow()
    local cap = out_cap == 0 and 65536 or out_cap * 2
    allow_more((cap - out_cap) * 16)
    local q = C.realloc(o_line, cap * 16)
    if q == nil then
      error("out of memory for charge lines", 0)
    end
    o_line = ffi_cast(i32w, q)
    out_cap = cap
  end
  -- Where each event's lines begin, by its position in the run order (`starts[j]`, set as
  -- its handler begins; starts[n] = n_out), and each row's position in that order
  -- (`pos`): with them the lines go back to input order event by event.
  local starts, pos
  local function scratch(n)
    allow_more(8 * (n + 1))
    starts = ffi_cast(i32w, C.calloc(n + 1, 4))
    pos = ffi_cast(i32w, C.calloc(n + 1, 4))
    if starts == nil or pos == nil then
      error("out of memory for the event order", 0)
    end
  end
  -- The types ran one after another: put the charge lines back in input order (event by
  -- event, so each event's lines keep their emission order), written straight into the
  -- output file the parent maps (worker.SharedOutput: the fd, sized here), so there is no
  -- sorted copy in this process to copy once more. Python then has no sort to do. Returns
  -- the (offset, bytes) of each array in the file, in OUT_ARRAYS order.
  local OUT_ARRAYS = { "ev", "code", "q", "b", "memo" }
  local PROT_RW, MAP_SHARED = 3, 1
  local function sort_output(fd, rows, lo, n)
    if n_out == 0 then
      return {}
    end
    local layout, size = {}, 0
    for a = 1, #OUT_ARRAYS do
      local nbytes = 4 * n_out
      layout[a] = { size, nbytes }
      size = size + math.ceil(nbytes / 8) * 8
    end
    allow_more(size)
    if C.ftruncate(fd, size) ~= 0 then
      error("cannot size the output file for charge lines", 0)
    end
    local base = C.mmap(nil, size, PROT_RW, MAP_SHARED, fd, 0)
    if ffi_cast("intptr_t", base) == -1 then
      error("cannot map the output file for charge lines", 0)
    end
    local at = ffi_cast("uint8_t *", base)
    local ev, code = ffi_cast(i32w, at + layout[1][1]), ffi_cast(i32w, at + layout[2][1])
    local q, b = ffi_cast(i32w, at + layout[3][1]), ffi_cast(i32w, at + layout[4][1])
    local memo = ffi_cast(i32w, at + layout[5][1])
    local function copy(to, k, row)
      local l = 4 * k
      ev[to], code[to], q[to], b[to], memo[to] = row, o_line[l], o_line[l + 1], o_line[l + 2], o_line[l + 3]
    end
    -- An event's first three lines are copied without an inner loop: most events have one
    -- to three, and a loop per event costs a trace transition each time.
    local d = 0
    for r = 0, n - 1 do
      local j = pos[r]
      local k, stop = starts[j], starts[j + 1]
      if k < stop then
        local row = rows[lo + r]
        copy(d, k, row)
        if k + 1 < stop then
          copy(d + 1, k + 1, row)
          if k + 2 < stop then
            copy(d + 2, k + 2, row)
            for x = k + 3, stop - 1 do
              copy(d + x - k, x, row)
            end
          end
        end
        d = d + (stop - k)
      end
    end
    if d ~= n_out then
      error("charge lines lost in the sort", 0)
    end
    C.free(o_line)
    o_line, out_cap = nil, 0
    C.munmap(base, size)
    return layout
  end

  local code_ids, code_list, n_codes = {}, {}, 0
  local str_ids, str_list, n_strs = {}, {}, 0
  -- quantities that are not their own id (Q_DIRECT and up): value -> id, and back
  local q_ids, q_list, n_qs = {}, {}, 0
  -- bases already checked (numbers and strings: distinct keys), value -> id, and back
  local basis_ids, basis_list, n_bases = {}, {}, 0
  local cur = 0

  local function intern(s)
    local id = str_ids[s]
    if not id then
      n_strs = n_strs + 1
      id = n_strs
      str_ids[s] = id
      str_list[id] = s
    end
    return id
  end

  local function charge(code, quantity, opts)
    local id = code_ids[code]
    if id == nil then
      if type(code) ~= "string" or #code > CODE_MAX or not str_find(code, "^[A-Z][A-Z0-9_]*$") then
        error("charge: bad code " .. describe(code) .. " (must match ^[A-Z][A-Z0-9_]{0,63}$)", 2)
      end
      n_codes = n_codes + 1
      id = n_codes
      code_ids[code] = id
      code_list[id] = code
    end
    if type(quantity) ~= "number" then
      error("charge: quantity must be a number, got " .. describe(quantity), 2)
    end
    if quantity ~= quantity or quantity < 0 or quantity >= DEC_MAX then
      error("charge: quantity must be a finite number >= 0, got " .. describe(quantity), 2)
    end
    local qid
    if quantity < Q_DIRECT and quantity == floor(quantity) then
      qid = quantity
    else
      qid = q_ids[quantity]
      if qid == nil then
        n_qs = n_qs + 1
        qid = Q_DIRECT + n_qs - 1
        q_ids[quantity] = qid
        q_list[n_qs] = quantity
      end
    end
    local bid, memo_id = 0, 0
    if opts ~= nil then
      if type(opts) ~= "table" then
        error("charge: opts must be a table, got " .. describe(opts), 2)
      end
      local basis, memo = opts.basis, opts.memo
      if basis ~= nil then
        bid = basis_ids[basis]
        if not bid then
          if type(basis) == "number" then
            if basis ~= basis or basis < 0 or basis >= DEC_MAX then
              error("charge: basis must be a finite number >= 0, got " .. describe(basis), 2)
            end
          elseif type(basis) == "string" then
            local why = check_basis_string(basis)
            if why then
              error("charge: basis " .. describe(basis) .. " is " .. why .. " (a decimal >= 0 with at most 6 places)", 2)
            end
          else
            error("charge: basis must be a number or a decimal string, got " .. describe(basis), 2)
          end
          n_bases = n_bases + 1
          bid = n_bases
          basis_ids[basis] = bid
          basis_list[bid] = basis
        end
      end
      if memo ~= nil then
        if type(memo) ~= "string" then
          error("charge: memo must be a string, got " .. describe(memo), 2)
        end
        if #memo > MEMO_MAX and utf8_len(memo) > MEMO_MAX then
          error("charge: memo longer than 200 characters", 2)
        end
        memo_id = intern(memo)
      end
    end
    local k = n_out
    if k >= out_cap then
      grow()
    end
    n_out = k + 1
    local l = 4 * k
    o_line[l] = id
    o_line[l + 1] = qid
    o_line[l + 2] = bid
    o_line[l + 3] = memo_id
  end

  local errors = { ev = {}, line = {}, msg = {} }
  local n_err = 0
  local function add_error(row, msg)
    n_err = n_err + 1
    errors.ev[n_err] = row
    local _, _, line = str_find(msg, "^[^\n]-%.lua:(%d+):")
    errors.line[n_err] = line and tonumber(line) or -1
    errors.msg[n_err] = msg
  end

  local ids = view_column(spec.event_id)
  local occ = view_column(spec.occurred_at)
  local pay = view_column(spec.payload)
  col_pay = pay
  local tcode = int_column(spec.event_type)
  local whs = view_column(spec.warehouse_id)
  local dcode = int_column(spec.activity_date)
  local vcode = int_column(spec.version)
  local rows = int_column(spec.row)
  local dates = spec.dates
  E_FIELDS = {
    event_id = function(r)
      return ffi_string(ids(r))
    end,
    occurred_at = function(r)
      return ffi_string(occ(r))
    end,
    event_type = function(r)
      return types[tcode[r]]
    end,
    client_id = function()
      return client_id
    end,
    warehouse_id = function(r)
      return ffi_string(whs(r))
    end,
    activity_date = function(r)
      return dates[dcode[r]]
    end,
  }
  local progress = ffi_cast(vi32p, spec.progress)

  -- Errors without a position (stack overflow, out of memory) get the innermost rule frame's.
  local function locate(err)
    if type(err) == "string" and str_find(err, "^[^\n]-%.lua:%d+:") then
      return err
    end
    for level = 2, 200 do
      local info = getinfo(level, "Sl")
      if not info then
        break
      end
      if info.what ~= "C" and str_sub(info.source, 1, 1) == "@" and info.currentline > 0 then
        return str_format("%s:%d: %s", str_sub(info.source, 2), info.currentline, message_of(err))
      end
    end
    return err
  end

  -- Before and after each handler call: where the loop of the type being run is, for
  -- run_type to resume after a failing handler.
  local at_j, at_e, at_ctx, at_mark, in_handler = 0, nil, nil, 0, false
  local SWALLOWED = {} -- raised by done(): the handler returned after its budget ran out
  local function begin(j, row, e, ctx)
    cur = row
    progress[0] = row
    budget, exceeded = max_budget, false
    starts[j] = n_out
    at_j, at_e, at_ctx, at_mark, in_handler = j, e, ctx, n_out, true
  end
  local function done()
    if exceeded then
      error(SWALLOWED, 0) -- still in the handler's event: run_type reports it as a rule error
    end
    in_handler = false
  end
  -- A failed call is run again, interpreted and under xpcall, whose message handler sees the
  -- stack before it unwinds and so can name the rule's file and line for errors raised
  -- without one (by a C function, a stack overflow). Handlers are pure, so the second run
  -- fails the same way (if it does not, the first message stands, and no charge counts
  -- either way); the fast path stays a plain pcall, which LuaJIT compiles (xpcall it does
  -- not).
  local function finish(h, e, ctx, row, mark, ok, err)
    if exceeded or not ok then
      n_out = mark
      if ok then
        err = "instruction budget exceeded (" .. budget_text .. "), error swallowed by the handler"
      else
        -- after an out-of-memory error LuaJIT needs a full collection before going on; a
        -- collection per error would make a rule that fails on every event quadratic-ish
        local oom = str_find(message_of(err), "not enough memory", 1, true)
        if oom then
          collect("collect")
        end
        budget, exceeded = max_budget, false
        -- interpreted: a stack overflow inside compiled code skips the message handler
        jit.off()
        local ok2, err2 = xpcall(h, locate, e, charge, ctx)
        if not ok2 and not (type(err2) == "string" and str_find(err2, "^[^\n]-%.lua:%d+:")) then
          -- compiled code of the rule still ran (a recursion trace): drop it and run again
          jit.flush()
          n_out, budget, exceeded = mark, max_budget, false
          ok2, err2 = xpcall(h, locate, e, charge, ctx)
        end
        if jit_wanted then
          jit.on()
        end
        if not ok2 then
          err = err2
        end
        n_out = mark
        if oom then
          collect("collect")
        end
      end
      add_error(row, message_of(err))
    end
  end

  -- The events of one type, in input order: build `e`, run the handler under its budget.
  -- Each type (and handler) has a loop of its own (RUN_LOOPS), so each gets its own traces:
  -- monomorphic (one handler, one payload shape), the JIT compiles the event building, the
  -- payload decoder, the handler and `charge` into one loop. The loops and the decoders are
  -- kept for the runtime's next batches (see CHUNKS).
  local function run_type(name, h, order, lo, hi)
    local key = name .. "\0" .. handler_key(h)
    local fn = RUN_LOOPS[key]
    if fn == nil then
      fn = assert(load(RUN_TYPE_SRC, "=run_type", "t", {}))
      RUN_LOOPS[key] = fn
    end
    local decode = DECODERS[name]
    if decode == nil then
      decode = new_decoder()
      DECODERS[name] = decode
    end
    local loop = fn(pay, setmetatable, E_MT, ROW, rows, charge, ctxs, vcode, begin, done, decode, h,
      confined(h), rawget, rawset)
    local j = lo
    while j < hi do
      local ok, err = pcall(loop, order, j, hi)
      if ok then
        return
      end
      if not in_handler then
        error(err, 0) -- not the rule's failure (the driver's own): the batch fails
      end
      in_handler = false
      local e, ctx = at_e, at_ctx
      at_e, at_ctx = nil, nil
      finish(h, e, ctx, cur, at_mark, err == SWALLOWED, err)
      j = at_j + 1
    end
  end
  return function(lo, hi)
    -- rows lo..hi grouped by type code (a counting sort), each group in input order
    local n = hi - lo + 1
    local n_types = 0
    for code in next, types do
      n_types = math.max(n_types, code + 1)
    end
    local first = ffi.new("int32_t[?]", n_types + 1)
    for i = lo, hi do
      local t = tcode[i]
      first[t + 1] = first[t + 1] + 1
    end
    for t = 1, n_types do
      first[t] = first[t] + first[t - 1]
    end
    local fill = ffi.new("int32_t[?]", n_types)
    ffi.copy(fill, first, 4 * n_types)
    local order = ffi.new("int32_t[?]", n > 0 and n or 1)
    scratch(n)
    for i = lo, hi do
      local t = tcode[i]
      local j = fill[t]
      order[j] = i
      pos[i - lo] = j
      fill[t] = j + 1
    end
    progress[0] = -1
    -- No loop optimization (LuaJIT's copy of the loop body, which keeps values alive from one
    -- iteration to the next) for the traces of the event loops: with it, the traces of the
    -- larger types (order.packed, order.shipped) sometimes failed with "too many spill
    -- slots", and after a few such aborts LuaJIT ran the whole loop interpreted (the
    -- worker's slow mode). Measured: no abort of that kind in ~18 traced runs without it,
    -- about one run in three with it; no loss in the fast mode.
    jit.opt.start("-loop")
    local ok, err = pcall(function()
      for code = 0, n_types - 1 do
        local h = handlers[code]
        if h then
          run_type(types[code], h, order, first[code], first[code + 1])
        else -- no lines for these events
          for j = first[code], first[code + 1] - 1 do
            starts[j] = n_out
          end
        end
      end
    end)
    jit.opt.start("+loop")
    if not ok then
      error(err, 0)
    end
    progress[0] = -1
    starts[n] = n_out
    local layout = sort_output(spec.output_fd, rows, lo, n)
    C.free(starts)
    C.free(pos)
    starts, pos = nil, nil
    return {
      n_out = n_out,
      layout = layout,
      codes = code_list,
      strings = str_list,
      q_direct = Q_DIRECT,
      quantities = q_list,
      bases = basis_list,
      errors = errors,
      n_err = n_err,
    }
  end
end

return M
