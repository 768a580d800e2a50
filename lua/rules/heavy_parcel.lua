-- Default rules plus a surcharge for parcels heavier than the rate card's `heavy_lb`.
local rules = require("rules.default")
local num = require("lib.util").num

local ship = rules["order.shipped"]

rules["order.shipped"] = function(e, charge, ctx)
  ship(e, charge, ctx)
  local limit = ctx.params.heavy_lb
  if limit ~= nil and num(e.payload.weight_lb) > num(limit) then
    charge("SHIP_HEAVY", 1)
  end
end

return rules
