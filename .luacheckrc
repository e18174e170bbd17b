-- luacheck configuration: `make lint`
std = "lua54"
max_line_length = 120
files["spec"] = { std = "+busted" }
-- `local x <close> = ...` exists for its __close, never read by name
ignore = { "211/_.*" }
