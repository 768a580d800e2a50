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
function M.code_part(text)
  return (string.upper(tostring(text)):gsub("[^A-Z0-9_]", "_"))
end

return M
