// What the appliance, the mount watch and /health need of a mount (LlMount, ll-mount.ts), kept
// as an interface so the mount watch and /health can be tested against any mount's life cycle.

export interface Mount {
  readonly mountPath: string;
  readonly mounted: boolean;
  /** The kernel's FUSE connection number of our mount, while mounted. */
  readonly connection: number | undefined;
  mount(): Promise<void>;
  unmount(): Promise<unknown>;
  /** Whether our kernel mount is still attached at the path. */
  attached(): Promise<boolean>;
  /** Forget a mount someone else took away, so mount() can be called again. */
  detached(): void;
}
