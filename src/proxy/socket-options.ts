/**
 * Socket buffer size we ask for (Linux caps it at net.core.rmem_max / wmem_max, which we never change).
 * Several MiB absorb bursts while the event loop is busy.
 */
export const SOCKET_BUFFER_BYTES = 8 << 20;
