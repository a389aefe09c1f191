-- Pipelining for wrk, as TechEmpower's plaintext test does it: each write carries N requests
-- (`wrk ... -s pipeline.lua -- 16`) and the next write goes out once all N answers are in.
-- Owns only init()/request(); the JSON report comes from wrk_report.lua beside this file.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk_report.lua")

local batch

function init(args)
  local depth = tonumber(args[1]) or 16
  batch = string.rep(wrk.format(nil), depth)
end

function request()
  return batch
end
