// The errno numbers replies use (Linux values, from node:os so they are the host's).
import { constants } from 'node:os';

const E = constants.errno;
export const ENOENT = E.ENOENT;
export const EIO = E.EIO;
export const EEXIST = E.EEXIST;
export const ENOTDIR = E.ENOTDIR;
export const EISDIR = E.EISDIR;
export const EINVAL = E.EINVAL;
export const ENOSPC = E.ENOSPC;
export const EROFS = E.EROFS;
export const ENOTEMPTY = E.ENOTEMPTY;
export const ENOSYS = E.ENOSYS;
export const ENOTSUP = E.ENOTSUP;
export const EACCES = E.EACCES;
export const EPERM = E.EPERM;
export const EAGAIN = E.EAGAIN;
export const EXDEV = E.EXDEV;
export const EBADF = E.EBADF;
export const ENXIO = E.ENXIO;
export const ENAMETOOLONG = E.ENAMETOOLONG;
export const ENOTCONN = E.ENOTCONN;
export const EOPNOTSUPP = E.EOPNOTSUPP;
export const EINTR = E.EINTR;
