"PICK", 1
"PICK", 0
"PICK", -0.0
"PICK", 0/0
"PICK", -(0/0)
"PICK", math.huge
"PICK", -math.huge
"PICK", -1
"PICK", 1e308 * 10
"PICK", 2^53 + 1
"PICK", 2^63
"PICK", 1e32
"PICK", 1e-7
"PICK", 0.0000005
"PICK", 0.1 + 0.2
"PICK", "1"
"PICK", "1e3"
"PICK", true
"PICK", {}
"PICK", nil
"PICK"
nil, 1
1, 1
{}, 1
"", 1
"pick", 1
"PICK\0", 1
"PICK ORDER", 1
string.rep("P", 65), 1
string.rep("P", 64), 1
"PICK", 1, "opts"
"PICK", 1, 7
"PICK", 1, {}
"PICK", 1, {basis = "7.42"}
"PICK", 1, {basis = "7,42"}
"PICK", 1, {basis = "1.0000001"}
"PICK", 1, {basis = "-1"}
"PICK", 1, {basis = "NaN"}
"PICK", 1, {basis = "1e999999999"}
"PICK", 1, {basis = 0/0}
"PICK", 1, {basis = math.huge}
"PICK", 1, {basis = 1e40}
"PICK", 1, {basis = {}}
"PICK", 1, {basis = " 7.42"}
"PICK", 1, {memo = "ok"}
"PICK", 1, {memo = string.rep("m", 200)}
"PICK", 1, {memo = string.rep("m", 201)}
"PICK", 1, {memo = string.rep("é", 200)}
"PICK", 1, {memo = "\255\254\0"}
"PICK", 1, {memo = "\237\160\128"}
"PICK", 1, {memo = "<script>alert(1)</script>"}
"PICK", 1, {memo = 5}
"PICK", 1, {unknown = true}
"PICK", 1, setmetatable({}, {__index = function() error("trap") end})
"PICK", setmetatable({}, {__tostring = function() return "1" end})
"PICK", 1, {basis = "7.42"}, "extra", 5
