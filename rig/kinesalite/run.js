// Starts kinesalite's own CLI, surviving clients that drop a connection mid-request.
//
// Under Node 20 an HTTP request whose client goes away before its body is complete raises
// "Error: aborted" (ECONNRESET) on a stream kinesalite does not watch, and the uncaught
// error ends the whole emulator. Real Kinesis does not go down when one client does, and the
// fault suite cuts connections on purpose, so that one error is logged and ignored here.
process.on('uncaughtException', function (err) {
  if (err && err.code === 'ECONNRESET') {
    console.error('kinesalite: ignored a request aborted by its client:', err.message)
    return
  }
  console.error(err)
  process.exit(1)
})
require('kinesalite/cli.js')
