import type { Socket } from 'node:net'

/**
 * Resolves once `socket` can take more writes, or has closed. 'drain' only fires after a write was
 * refused; below the socket's own high-water mark (or behind ws's deflate queue), a short poll
 * instead. The one wait for a full socket, for the firehose's and Jetstream's pumps.
 */
export function socketDrained(socket: Socket): Promise<void> {
  if (!socket.writableNeedDrain) return new Promise((resolve) => setTimeout(resolve, 5))
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done)
      socket.off('close', done)
      resolve()
    }
    socket.on('drain', done)
    socket.on('close', done)
  })
}
