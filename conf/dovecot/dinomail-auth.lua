-- DinoMail: Dovecot passdb and userdb through the lookup daemon's HTTP endpoints.
--
-- For Dovecot 2.4 (passdb lua / userdb lua, see 2.4/dovecot.conf) and 2.3
-- (2.3/auth-dinomail-lua.conf.ext). Needs Debian's dovecot-auth-lua, lua-socket and lua-dkjson
-- (pure Lua, installed for every Lua version; lua-json is not built for the Lua 5.4 that
-- Dovecot's auth plugin embeds).
--
-- Settings: Dovecot 2.4 passes them from lua_settings; on 2.3, which passes none, edit the
-- defaults in `config` below.
--   url      the lookup daemon's LOOKUPD_HTTP_LISTEN as a URL (default http://127.0.0.1:10029)
--   secret   DOVECOT_HTTP_SECRET, when it is set (sent as "Authorization: Bearer <secret>")
--   timeout  seconds to wait for an answer (default 5)
--   dovecot  the Dovecot version whose userdb field names to ask for: 2.3 (quota_rule, the
--            default) or 2.4 (quota_storage_size)
--
-- Passwords are checked by the lookup daemon (auth_password_verify → POST /dovecot/verify):
-- the main password, or an app password allowed for the service (%{service}: imap, pop3, sieve,
-- smtp); a domain may require app passwords, and then the main password opens none of these.
-- auth_passdb_lookup (the stored hash, for mechanisms other than PLAIN and LOGIN) knows
-- nothing of app passwords: keep auth_mechanisms = plain login.
--
-- Answers: 200 → the fields (password, nologin, reason, user; uid, gid, home, quota_rule);
-- 404 → unknown user. Anything else (503 while the daemon has no data yet, a refused
-- connection, a timeout, a malformed body) is an internal failure: Dovecot says "temporary
-- failure" and keeps its cached answers, instead of telling a user that an existing password
-- is wrong or LMTP that an existing mailbox does not exist.

local http = require("socket.http")
local ltn12 = require("ltn12")
local json = require("dkjson")

local config = { url = "http://127.0.0.1:10029", secret = "", timeout = "5", dovecot = "2.3" }

local function configure(args)
  if type(args) ~= "table" then
    return
  end
  for key, value in pairs(args) do
    if config[key] ~= nil then
      config[key] = tostring(value)
    end
  end
  config.url = config.url:gsub("/+$", "")
end

-- Dovecot 2.4 passes lua_settings here; 2.3 passes nothing.
function script_init(args)
  configure(args)
  return 0
end

-- A login in a URL path: everything but unreserved characters and @ percent-encoded.
local function path_escape(text)
  return (text:gsub("[^%w%-%._~@]", function(char)
    return string.format("%%%02X", string.byte(char))
  end))
end

-- A form value: everything but unreserved characters percent-encoded (any bytes pass).
local function form_escape(text)
  return (tostring(text):gsub("[^%w%-%._~]", function(char)
    return string.format("%%%02X", string.byte(char))
  end))
end

-- GET a path, or POST `form` (a table) to it; returns the HTTP status and the body, or nil and
-- why the request failed.
local function request(path, form)
  local body = {}
  local headers = { ["Accept"] = "application/json" }
  if config.secret ~= "" then
    headers["Authorization"] = "Bearer " .. config.secret
  end
  local source = nil
  local method = "GET"
  if form ~= nil then
    local parts = {}
    for key, value in pairs(form) do
      parts[#parts + 1] = form_escape(key) .. "=" .. form_escape(value)
    end
    local encoded = table.concat(parts, "&")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    headers["Content-Length"] = tostring(#encoded)
    source = ltn12.source.string(encoded)
    method = "POST"
  end
  http.TIMEOUT = tonumber(config.timeout) or 5
  local ok, status = http.request({
    url = config.url .. path,
    method = method,
    headers = headers,
    source = source,
    sink = ltn12.sink.table(body),
  })
  if ok == nil then
    return nil, tostring(status)
  end
  return status, table.concat(body)
end

local function get(path)
  return request(path, nil)
end

-- A flat JSON object as Dovecot fields (strings), or nil and the reason.
local function decode_fields(body)
  local value, _, err = json.decode(body)
  if type(value) ~= "table" then
    return nil, "invalid JSON from DinoMail: " .. tostring(err)
  end
  local fields = {}
  for key, field in pairs(value) do
    fields[key] = tostring(field)
  end
  return fields
end

-- One lookup: "ok" and the fields, "unknown", or "failed" and the reason.
local function lookup(kind, user)
  local path = "/dovecot/" .. kind .. "/" .. path_escape(user)
  if kind == "userdb" and config.dovecot == "2.4" then
    path = path .. "?dovecot=2.4"
  end
  local status, body = get(path)
  if status == 200 then
    local fields, err = decode_fields(body)
    if fields == nil then
      return "failed", err
    end
    return "ok", fields
  elseif status == 404 then
    return "unknown"
  elseif status == nil then
    return "failed", "DinoMail lookup daemon unreachable: " .. body
  end
  return "failed", "DinoMail lookup daemon answered HTTP " .. tostring(status)
end

function auth_passdb_lookup(req)
  local result, fields = lookup("passdb", req.user)
  if result == "ok" then
    return dovecot.auth.PASSDB_RESULT_OK, fields
  elseif result == "unknown" then
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "no such user"
  end
  req:log_error(fields)
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "temporary failure"
end

-- A PLAIN or LOGIN password: the lookup daemon checks it (main password or app password).
function auth_password_verify(req, password)
  local status, body = request("/dovecot/verify", {
    user = req.user, password = password, service = req.service,
  })
  if status == 200 then
    local answer, _, err = json.decode(body)
    if type(answer) ~= "table" then
      req:log_error("invalid JSON from DinoMail: " .. tostring(err))
      return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "temporary failure"
    end
    if answer.result == "ok" then
      local fields = {}
      for key, field in pairs(answer.fields or {}) do
        fields[key] = tostring(field)
      end
      return dovecot.auth.PASSDB_RESULT_OK, fields
    end
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, "password mismatch"
  elseif status == 404 then
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "no such user"
  elseif status == nil then
    req:log_error("DinoMail lookup daemon unreachable: " .. body)
  else
    req:log_error("DinoMail lookup daemon answered HTTP " .. tostring(status))
  end
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "temporary failure"
end

function auth_userdb_lookup(req)
  local result, fields = lookup("userdb", req.user)
  if result == "ok" then
    return dovecot.auth.USERDB_RESULT_OK, fields
  elseif result == "unknown" then
    return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, "no such user"
  end
  req:log_error(fields)
  return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, "temporary failure"
end

-- `doveadm user '*'`: every mailbox's address.
function auth_userdb_iterate()
  local status, body = get("/dovecot/users")
  if status ~= 200 then
    error("DinoMail user list failed: " .. tostring(status) .. " " .. tostring(body))
  end
  local users = json.decode(body)
  if type(users) ~= "table" then
    error("DinoMail user list: invalid JSON")
  end
  return users
end
