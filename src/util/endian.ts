/** Whether this platform stores numbers little-endian (typed-array views then match the wire's byte order). */
export const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
