-- wrk_random.lua -- wrk requests on a random space (and time) per request, for
-- bench/run_http.sh and bench/run_year.sh. Parameters from the environment:
--   FF_KIND   count_now:  GET /v1/spaces/S/count
--             count_at:   GET /v1/spaces/S/count?at=T, T uniform in [FF_T0, FF_T1) (epoch s)
--             counts_day: GET /v1/spaces/S/counts?start=D&end=D+1d&interval=15m (96 buckets),
--                         D = FF_FIRST_DAY + k days, k uniform in [0, FF_DAYS)
--   FF_SPACES S uniform in [1, FF_SPACES]
-- Non-2xx answers show in wrk's summary ("Non-2xx or 3xx responses").
local kind = os.getenv("FF_KIND") or "count_now"
local spaces = tonumber(os.getenv("FF_SPACES") or "2")
local t0 = tonumber(os.getenv("FF_T0") or "0")
local t1 = tonumber(os.getenv("FF_T1") or "1")
local first_day = tonumber(os.getenv("FF_FIRST_DAY") or "0")
local days = tonumber(os.getenv("FF_DAYS") or "1")

local function iso(s, us)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%06dZ", us or 0)
end

function init(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6))
end

function request()
  local sp = math.random(1, spaces)
  local path
  if kind == "count_at" then
    local t = t0 + math.random() * (t1 - t0)
    local s = math.floor(t)
    path = string.format("/v1/spaces/%d/count?at=%s", sp, iso(s, math.floor((t - s) * 1e6)))
  elseif kind == "counts_day" then
    local d = first_day + math.random(0, days - 1) * 86400
    path = string.format("/v1/spaces/%d/counts?start=%s&end=%s&interval=15m", sp, iso(d), iso(d + 86400))
  else
    path = string.format("/v1/spaces/%d/count", sp)
  end
  return wrk.format("GET", path)
end
