// json-server middleware: stamp updated_at (ISO 8601 UTC) on every write, as an API with
// change tracking does, so that incremental pulls see records created or changed there.
module.exports = (req, res, next) => {
  if (["POST", "PUT", "PATCH"].includes(req.method) && req.body && typeof req.body === "object") {
    req.body.updated_at = new Date().toISOString();
  }
  next();
};
