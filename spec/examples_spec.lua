-- The examples: each runs as its own process (lua5.4, with this run's
-- package paths, so it loads the module under test), must end by itself
-- with exit code 0, and must print its key result line. examples/host.c is
-- run by `make run-host`.

-- The command that runs lua5.4 on an example, with our paths; `timeout`
-- bounds it, so a hang fails the spec instead of stopping the suite.
local function command(script, args, untimed)
  return ("env LUA_PATH=%q LUA_CPATH=%q %slua5.4 examples/%s %s")
    :format(package.path, package.cpath, untimed and "" or "timeout 60 ", script, args or "")
end

-- Run an example to its end: its output (stdout and stderr) and exit code.
local function run(script, args)
  local p = assert(io.popen(command(script, args) .. " 2>&1"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

local function ran(script, args)
  local out, code = run(script, args)
  assert.equal(0, code, script .. " failed:\n" .. out)
  return out
end

describe("examples/echo_client.lua", function()
  it("starts the echo server in a second process and gets every line back", function()
    local out = ran("echo_client.lua")
    assert.matches("50 clients x 20 lines: 1000 echoed right, 0 clients failed", out, 1, true)
    assert.matches("server done: 50 connections, 1000 lines echoed", out, 1, true)
  end)
end)

describe("examples/echo_server.lua", function()
  it("serves a client given its port and shuts down cleanly on SIGTERM", function()
    -- sh prints its pid, then becomes env, then lua5.4 (the same pid): the
    -- signal's target. Should the signal be lost, the server ends after 5 s
    -- without a connection.
    local p = assert(io.popen("sh -c 'echo $$; exec " .. command("echo_server.lua", "0 5", true)
                              .. "'"))
    local pid = assert(tonumber(p:read("l")))
    local port = assert(tonumber(p:read("l"):match("^listening on 127%.0%.0%.1:(%d+)$")))
    local cout, ccode = run("echo_client.lua", port .. " 10 5")
    os.execute("kill -TERM " .. pid)
    local sout = p:read("a")
    local _, _, scode = p:close()
    assert.equal(0, ccode, cout)
    assert.matches("10 clients x 5 lines: 50 echoed right, 0 clients failed", cout, 1, true)
    assert.equal(0, scode, sout)
    assert.matches("server: SIGTERM, shutting down", sout, 1, true)
    assert.matches("server done: 10 connections, 50 lines echoed", sout, 1, true)
  end)
end)

describe("examples/chat.lua", function()
  it("broadcasts every user's messages to every other user", function()
    local out = ran("chat.lua")
    for i = 1, 5 do
      assert.matches("user" .. i .. " heard 40 messages from 4 others", out, 1, true)
    end
    assert.matches("5 users, 10 messages each, 0 dropped, in [%d.]+ s: all delivered", out)
  end)
end)

describe("examples/pipeline.lua", function()
  it("gets every item through the workers and ends by closing", function()
    local out = ran("pipeline.lua")
    assert.matches("consumed 1000 results, sum of squares 333833500 (expected 333833500), "
                   .. "at most 8 queued: ok", out, 1, true)
  end)
end)

describe("examples/http_fetch.lua", function()
  it("fetches concurrently through socket.http over the drop-in", function()
    local out = ran("http_fetch.lua")
    local took = out:match("50 of 50 fetches through socket%.http right in ([%d.]+) s")
    assert.is_not_nil(took, out)
  end)
end)

describe("examples/threads_reuseport.lua", function()
  it("serves every connection from several threads on one port", function()
    local out = ran("threads_reuseport.lua")
    local total, busy = out:match("(%d+) connections served by (%d+) of 4 threads")
    assert.equal("400", total, out)
    -- the kernel spreads 400 connections: more than one thread serves
    assert.is_true(tonumber(busy) >= 2, out)
  end)
end)

describe("examples/demo.lua", function()
  it("runs the line server and its clients to the end", function()
    local out = ran("demo.lua", "50 5")
    assert.matches("50 clients x 5 requests: 50 clients all answers right, 0 failed", out, 1, true)
  end)
end)
