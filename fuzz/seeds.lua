-- fuzz/seeds.lua: writes the hand-made seed inputs of fuzz/corpus/<target>/
-- and the reproducers of fuzz/regress/<target>/, so that each file says in
-- words what it is. Run from the repository root: lua5.4 fuzz/seeds.lua
-- (the files are committed; rerun after changing an input format).

local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

-- === recv_fuzz ===========================================================
-- Layout (see decode() in recv_fuzz.c): flags (bit 0: the peer closes at
-- the end), number of receives - 1, per receive 6 bytes (pattern kind,
-- parameter low, parameter high, line bound (255: none), prefix length,
-- patience (255: forever)), number of chunks, per chunk 2 bytes (size,
-- reserve mode), the prefixes' bytes, then the stream.

local K = {int = 0, float = 1, numstr = 2, line = 3, all = 4, default = 5,
           str = 6, odd = 7, any = 8, bool = 9}

local function recv(t)
  local out = {string.char(t.eof and 1 or 0, #t.ops - 1)}
  local prefixes = {}
  for _, o in ipairs(t.ops) do
    local v = o.v or 0
    local prefix = o.prefix or ""
    out[#out + 1] = string.char(K[o.kind], v % 256, v // 256, o.max or 255, #prefix,
                                o.patience or 255)
    prefixes[#prefixes + 1] = prefix
  end
  local chunks = t.chunks or {}
  out[#out + 1] = string.char(#chunks)
  for _, c in ipairs(chunks) do
    if type(c) == "number" then c = {c, 0} end
    out[#out + 1] = string.char(c[1], c[2])
  end
  out[#out + 1] = table.concat(prefixes)
  out[#out + 1] = t.stream or ""
  return table.concat(out)
end

local R = "fuzz/corpus/recv_fuzz/"
local seeds = {
  ["lines-crlf"] = {eof = true, ops = {{kind = "line"}, {kind = "line"}, {kind = "line"}},
                    chunks = {3, 4, 1, 1}, stream = "hello\r\nworld\nlast\r"},
  ["count-prefix"] = {ops = {{kind = "int", v = 5, prefix = "ab"}, {kind = "int", v = 2}},
                      chunks = {1, 2, 3}, stream = "cdefgh"},
  ["prefix-covers-count"] = {ops = {{kind = "int", v = 2, prefix = "abc"}, {kind = "int", v = 1}},
                             chunks = {1}, stream = "x"},
  ["all-then-closed"] = {eof = true, ops = {{kind = "all"}, {kind = "all", prefix = "p"}},
                         chunks = {2, 2}, stream = "abcd"},
  ["all-empty-closed"] = {eof = true, ops = {{kind = "all"}}},
  ["receive-zero"] = {ops = {{kind = "int", v = 0}, {kind = "int", v = 0, prefix = "x"},
                             {kind = "default"}}, chunks = {4}, stream = "abc\n"},
  ["receive-zero-waits"] = {ops = {{kind = "int", v = 0, patience = 0}, {kind = "int", v = 0}},
                            chunks = {0, 2}, stream = "ab"},
  ["line-bound"] = {eof = true, ops = {{kind = "line", max = 4}, {kind = "line", max = 4}},
                    chunks = {6}, stream = "abc\nabcd\n"},
  ["line-too-long"] = {ops = {{kind = "line", max = 3}}, chunks = {8}, stream = "abcdefgh"},
  ["timeouts"] = {ops = {{kind = "int", v = 10, patience = 1}, {kind = "line", patience = 0},
                         {kind = "line", patience = 2}}, chunks = {3, 3, 3, 3},
                  stream = "abc\r\nd\nfghij"},
  ["pattern-forms"] = {eof = true, ops = {{kind = "numstr", v = 3}, {kind = "numstr", v = 2 + 512},
                                          {kind = "float", v = 2 * 256 + 200},
                                          {kind = "line", v = 1}, {kind = "all", v = 1}},
                       chunks = {5, 5}, stream = "0123456789\nrest"},
  ["pattern-errors"] = {ops = {{kind = "str", v = ("*x"):byte(1) + 256 * ("*x"):byte(2)},
                               {kind = "odd", v = 0}, {kind = "odd", v = 12}, {kind = "bool"},
                               {kind = "str", v = ("*l"):byte(1) + 256 * ("*l"):byte(2)}},
                        chunks = {3}, stream = "ok\n"},
  ["receiveany"] = {eof = true, ops = {{kind = "any", v = 2}, {kind = "any", v = 511},
                                       {kind = "any", v = 0}}, chunks = {5, 1}, stream = "abcdef"},
  -- reserve modes 2 and 3: a move to the front (after a count consumed 3
  -- bytes), then growth with bytes consumed, beyond 64 KiB
  ["buffer-growth"] = {eof = true, ops = {{kind = "int", v = 3}, {kind = "int", v = 3},
                                          {kind = "all"}},
                       chunks = {{4, 2}, {4, 2}, {4, 2 + 4 * 63}, {4, 3 + 4 * 63}, {4, 2}},
                       stream = "abcdefghijklmnopqrst"},
  ["line-inner-cr"] = {eof = true, ops = {{kind = "line", prefix = "p\r"}, {kind = "line"}},
                       chunks = {2, 3}, stream = "a\rb\nc\r\rd"},
}
for name, t in pairs(seeds) do write(R .. name, recv(t)) end
write(R .. "empty", "")

-- Reproducers of what fuzzing found in the receive engine.
local RR = "fuzz/regress/recv_fuzz/"
-- A "*l" receive that times out on a socket that never read a byte:
-- tsk_buf_ptr of the never-allocated buffer is NULL + 0 (clang UBSan).
write(RR .. "fresh-buffer-null-offset",
      recv{ops = {{kind = "line", max = 10, patience = 0}}})
-- "*l" bounded to 4 bytes over "abcde\nok\n": the too-long line fails with
-- every byte buffered at that moment, so the next line survives or not
-- depending on how the bytes arrived.
write(RR .. "toolong-depends-on-arrival",
      recv{eof = true, ops = {{kind = "line", max = 4}, {kind = "line", max = 4}},
           chunks = {5, 4}, stream = "abcde\nok\n"})

-- === copy_fuzz ===========================================================
-- The input is a message's data (see copy.c): a varint count, then values:
-- tag byte (0 nil, 1 false, 2 true, 3 integer, 4 float, 5 string, 6 table,
-- 7 reference to a finished table, 8 xchannel) and its payload.

local function varint(n)
  local out = {}
  repeat
    local b = n % 128
    n = n // 128
    out[#out + 1] = string.char(n > 0 and b + 128 or b)
  until n == 0
  return table.concat(out)
end
local function msg(...) return varint(select("#", ...)) .. table.concat({...}) end
local NIL, FALSE, TRUE = "\0", "\1", "\2"
local function int(i) return "\3" .. string.pack("=j", i) end
local function flt(x) return "\4" .. string.pack("=n", x) end
local function str(s) return "\5" .. varint(#s) .. s end
local function tab(arr, hash)
  hash = hash or {}
  return "\6" .. string.pack("<I4I4", #arr, #hash // 2) .. table.concat(arr) .. table.concat(hash)
end
local function ref(i) return "\7" .. varint(i) end
local function xch(i) return "\8" .. varint(i) end

local C = "fuzz/corpus/copy_fuzz/"
write(C .. "none", msg())
write(C .. "scalars", msg(NIL, FALSE, TRUE, int(42), int(math.mininteger), flt(0.5),
                          flt(-0.0), flt(0/0), str(""), str("a\0b")))
write(C .. "one-string", msg(str("hello")))
write(C .. "one-integer", msg(int(-1)))
write(C .. "one-float", msg(flt(1e300)))
write(C .. "array", msg(tab({int(1), int(2), str("three")})))
write(C .. "array-hole", msg(tab({int(1), NIL, int(3)})))
write(C .. "hash", msg(tab({}, {str("x"), int(1), str("y"), tab({TRUE}), flt(2.5), FALSE})))
write(C .. "nested", msg(tab({tab({tab({str("deep")})})})))
-- {a = t, b = t}: one table reached twice (table 1 is referenced once done)
write(C .. "shared", msg(tab({}, {str("a"), tab({int(7)}), str("b"), ref(1)})))
write(C .. "shared-across-values", msg(tab({str("s")}), ref(0), ref(0)))
write(C .. "table-key", msg(tab({}, {tab({int(1)}), str("v"), TRUE, ref(1)})))
write(C .. "xchannels", msg(xch(0), xch(1), tab({xch(0)}, {xch(1), int(1)})))
-- malformed ones, which must be rejected
write(C .. "bad-truncated", msg(tab({int(1), int(2)})):sub(1, -3))
write(C .. "bad-trailing", msg(TRUE) .. "\0")
write(C .. "bad-ref-open", msg(tab({ref(0)})))
write(C .. "bad-unknown-tag", msg("\9"))
write(C .. "bad-nan-key", msg(tab({}, {flt(0/0), TRUE})))
write(C .. "bad-xchannel", msg(xch(2)))
write(C .. "bad-count", varint(1000))

-- Reproducers of what fuzzing found in the copy code.
local CR = "fuzz/regress/copy_fuzz/"
-- One string whose length varint has 10 bytes, the last one carrying bits
-- past 64: tsk_msg_tovalue drops them and accepts ""; tsk_copy_decodebuf
-- rejects "number too large".
write(CR .. "tovalue-overlong-varint", "\1\5" .. ("\128"):rep(9) .. "\2")
