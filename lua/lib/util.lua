-- Helpers shared by billing rules.
local M = {}

-- A payload decimal as a number: decimals may arrive as JSON strings ("7.42") or numbers.
function M.num(value)
  if type(value) == "number" then
    return value
  end
  local n = tonumber(value)
  if n == nil then
    error("not a number: " .. tostring(value), 2)
  end
  return n
end

-- Emits `code` only for a positive quantity.
function M.charge_positive(charge, code, quantity, opts)
  if quantity > 0 then
    charge(code, quantity, opts)
  end
end

-- A free-form code ("poly-mailer") as a charge-code suffix ("POLY_MAILER").
-- Memoized by the string: packing materials are a handful of codes, and `gsub` is a C call
-- that LuaJIT cannot compile into the event loop. The result depends on the text alone, so
-- the cache changes nothing a rule can see; it holds at most CODE_CACHE_MAX entries.
local CODE_CACHE_MAX = 4096
local code_cache, code_cached = {}, 0

local function convert(text)
  return (string.upper(tostring(text)):gsub("[^A-Z0-9_]", "_"))
end

function M.code_part(text)
  local part = code_cache[text]
  if part ~= nil then
    return part
  end
  part = convert(text)
  if type(text) == "string" and code_cached < CODE_CACHE_MAX then
    code_cached = code_cached + 1
    code_cache[text] = part
  end
  return part
end

return M
