import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { ListenAddress } from '../config.js'

/** Listen on `address`, rejecting on a bind error (port in use, no permission) instead of emitting it later. */
export async function listenOn(server: Server, address: ListenAddress): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(address.port, address.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server.address() as AddressInfo
}
