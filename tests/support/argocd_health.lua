-- Runs a health.lua the way Argo CD does: the object in the global `obj`, `os` reduced to
-- time() and date(), and (unless the customization sets useOpenLibs) without the string and
-- math libraries. Usage: lua harness.lua HEALTH_LUA INPUT_LUA, where INPUT_LUA sets
-- `obj`, `NOW` (what os.time() returns) and `OPEN_LIBS`. Prints "<status>\t<message>".
local script_path, input_path = arg[1], arg[2]
dofile(input_path)

local date = os.date
os = {
  time = function(fields)
    assert(fields == nil, "health.lua must not depend on the controller's time zone")
    return NOW
  end,
  date = date,
}
if not OPEN_LIBS then
  string = nil
  math = nil
end
local write = io.write

local chunk = assert(loadfile(script_path))
local hs = chunk()
write(hs.status, "\t", hs.message or "", "\n")
