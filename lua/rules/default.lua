-- Default billing rules: every catalog event type, as docs/charge-codes.md lists them.
local util = require("lib.util")

local num, charge_positive, code_part = util.num, util.charge_positive, util.code_part

local STORAGE = { pallet = "STORAGE_PALLET", shelf = "STORAGE_SHELF", bin = "STORAGE_BIN" }
local CONTAINER = { ["20ft"] = "RECV_CONTAINER_20FT", ["40ft"] = "RECV_CONTAINER_40FT", ["45ft"] = "RECV_CONTAINER_45FT" }

local rules = {}

rules["order.picked"] = function(e, charge)
  charge("PICK_ORDER", 1)
  charge_positive(charge, "PICK_ADD_UNIT", e.payload.units - 1)
end

rules["order.packed"] = function(e, charge)
  local p = e.payload
  charge("PACK_CARTON", p.cartons)
  -- ipairs: the materials keep their order in the payload, so charges are deterministic
  for _, material in ipairs(p.materials) do
    charge("MAT_" .. code_part(material.code), material.qty)
  end
  charge_positive(charge, "PACK_INSERT", p.inserts)
end

rules["order.shipped"] = function(e, charge)
  -- label_cost may be a decimal string: handed over as is, it stays exact
  charge("SHIP_LABEL", 1, { basis = e.payload.label_cost })
end

rules["order.cancelled"] = function(e, charge)
  if e.payload.stage == "after_pick" then
    charge("CANCEL_RESTOCK", 1)
  end
end

rules["receipt.completed"] = function(e, charge)
  local p = e.payload
  local kind = p.receipt_type
  if kind == "parcel" then
    charge("RECV_PARCEL", 1)
    charge_positive(charge, "RECV_UNIT", p.units)
  elseif kind == "carton" then
    charge_positive(charge, "RECV_CARTON", p.cartons)
  elseif kind == "pallet" then
    charge_positive(charge, "RECV_PALLET", p.pallets)
  elseif kind == "container" then
    charge(CONTAINER[p.container_size or "40ft"], 1)
    charge_positive(charge, "RECV_CARTON", p.cartons)
  end
end

rules["inventory.snapshot"] = function(e, charge)
  charge(STORAGE[e.payload.location_type], e.payload.locations)
end

rules["return.processed"] = function(e, charge)
  local p = e.payload
  charge("RETURN_ORDER", 1)
  charge("RETURN_UNIT", p.units)
  if p.disposition == "dispose" then
    charge("DISPOSAL_UNIT", p.units)
  end
end

rules["kit.assembled"] = function(e, charge)
  local p = e.payload
  charge("KIT_BUILD", p.kits)
  charge("KIT_COMPONENT", p.kits * p.components_per_kit)
end

rules["labor.logged"] = function(e, charge)
  charge("LABOR_HOUR", num(e.payload.hours), { memo = e.payload.task })
end

rules["putaway.completed"] = false -- included in receiving
rules["inventory.adjusted"] = false -- not billable

return rules
