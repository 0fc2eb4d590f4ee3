// What the appliance, the mount watch and /health need of a mount, whichever binding serves it:
// FuseMount (fuse-native, libfuse 2, paths) or LlMount (libfuse3 low-level, node ids).

export interface Mount {
  readonly mountPath: string;
  readonly mounted: boolean;
  /** The kernel's FUSE connection number of our mount, while mounted. */
  readonly connection: number | undefined;
  /** Why single-time utimens is not passed through (libfuse 2 only), or undefined. */
  readonly utimeOmitProblem: string | undefined;
  mount(): Promise<void>;
  unmount(): Promise<unknown>;
  /** Whether our kernel mount is still attached at the path. */
  attached(): Promise<boolean>;
  /** Forget a mount someone else took away, so mount() can be called again. */
  detached(): void;
}
