-- leanvibe_weights: traffic weights of each app's blue and green colors.
-- The weights live in a shared dict, so a change needs no reload and drops no
-- keep-alive connection. Each app's state is one string value: a reader never
-- sees half an update.
local _M = {}

local COLORS = { "blue", "green" }
local dict = ngx.shared.leanvibe_weights

local function parse(text)
  local values = {}
  for line in string.gmatch(text or "", "[^\r\n]+") do
    local key, value = string.match(line, "^%s*([%w_]+)%s*=%s*([%w_]*)%s*$")
    if key then values[key] = value end
  end
  local weights, total = {}, 0
  for _, color in ipairs(COLORS) do
    local weight = tonumber(values[color] or "0")
    if not weight or weight < 0 or weight > 100 or weight ~= math.floor(weight) then
      return nil, "weight of " .. color .. " must be a whole number from 0 to 100"
    end
    weights[color] = weight
    total = total + weight
  end
  if total ~= 100 then return nil, "weights sum to " .. total .. ", not 100" end
  local stable, canary = values.stable, values.canary or ""
  if stable ~= "blue" and stable ~= "green" then return nil, "stable must be blue or green" end
  if canary ~= "" and canary ~= "blue" and canary ~= "green" then return nil, "canary must be blue, green or empty" end
  if canary == stable then return nil, "canary must differ from stable" end
  return string.format("%d %d %s %s", weights.blue, weights.green, stable, canary == "" and "-" or canary)
end

local function render(value)
  local blue, green, stable, canary = string.match(value, "^(%d+) (%d+) (%a+) (%S+)$")
  return string.format("blue=%s\ngreen=%s\nstable=%s\ncanary=%s\n", blue, green, stable, canary == "-" and "" or canary)
end

-- init_by_lua: at start and at every reload, the weights file is the truth.
function _M.load_file(app, path)
  local file = io.open(path, "r")
  if not file then return end
  local text = file:read("*a")
  file:close()
  local value, err = parse(text)
  if not value then
    ngx.log(ngx.ERR, "leanvibe: ignoring weights file ", path, ": ", err)
    return
  end
  dict:set(app, value)
end

function _M.seed()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
end

-- set_by_lua: the upstream group of this request.
function _M.pick(app)
  local value = dict:get(app)
  if not value then return "leanvibe_" .. app .. "_blue" end
  local blue, _, stable, canary = string.match(value, "^(%d+) (%d+) (%a+) (%S+)$")
  if canary ~= "-" and ngx.var.http_x_canary == "always" then
    return "leanvibe_" .. app .. "_" .. canary
  end
  blue = tonumber(blue)
  if blue >= 100 then return "leanvibe_" .. app .. "_blue" end
  if blue <= 0 then return "leanvibe_" .. app .. "_green" end
  if math.random(100) <= blue then return "leanvibe_" .. app .. "_blue" end
  return "leanvibe_" .. app .. "_green"
end

-- content_by_lua on the admin socket: GET or PUT /leanvibe/weights/<app>.
function _M.admin(app)
  local method = ngx.req.get_method()
  ngx.header["Content-Type"] = "text/plain"
  if method == "PUT" or method == "POST" then
    ngx.req.read_body()
    local value, err = parse(ngx.req.get_body_data())
    if not value then
      ngx.status = 400
      ngx.say(err)
      return
    end
    local ok, set_err = dict:set(app, value)
    if not ok then
      ngx.status = 500
      ngx.say("could not store weights: ", set_err)
      return
    end
    ngx.print(render(value))
  elseif method == "GET" then
    local value = dict:get(app)
    if not value then
      ngx.status = 404
      ngx.say("no weights for app ", app)
      return
    end
    ngx.print(render(value))
  else
    ngx.status = 405
    ngx.say("use GET or PUT")
  end
end

return _M
