/**
 * The `--watch` refresher's informers: client-node's ListWatch with the two things it lacks, a
 * field selector and a time limit on every request (a watch or list the API server accepts but
 * never answers fails and is retried, instead of hanging that informer for good), and initial
 * lists paginated so that 2,000 namespaces do not arrive as one response.
 */
import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from "@kubernetes/client-node";

export type ListFunction<T extends KubernetesObject> = () => Promise<KubernetesListObject<T>>;

/** How long a watch or list request may go unanswered before it counts as failed (and is retried). */
export const defaultRequestTimeoutMs = 30_000;

/**
 * client-node's Watch waits for the response to a watch request without a time limit: an API
 * server that accepts the connection but never answers (starting up, a half-open connection) would
 * hang that watch for good. This one fails the request after `timeoutMs` without an answer; a late
 * answer is closed at once and reported to no one.
 */
class AnsweringWatch extends Watch {
  constructor(
    config: KubeConfig,
    private readonly timeoutMs: number,
  ) {
    super(config);
  }

  override async watch(...[path, query, callback, done]: Parameters<Watch["watch"]>): Promise<AbortController> {
    let timedOut = false;
    let answered = false;
    const timer = setTimeout(() => {
      if (answered) return;
      timedOut = true;
      done(new Error(`the API server did not answer the watch of ${path} within ${this.timeoutMs / 1000} s`));
    }, this.timeoutMs);
    const controller = await super.watch(path, query, callback, (error: unknown) => {
      clearTimeout(timer);
      if (!timedOut) done(error);
    });
    answered = true;
    clearTimeout(timer);
    if (timedOut) controller.abort();
    return controller;
  }
}

/** One list request that fails after `timeoutMs` instead of hanging its informer's start; a late answer is dropped. */
export function answered<T>(request: Promise<T>, what: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the API server did not answer the list of ${what} within ${timeoutMs / 1000} s`)), timeoutMs);
    request.then(
      (result) => {
        clearTimeout(timer);
        resolve(result);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/** An informer with an optional field selector (client-node's makeInformer takes none) whose watch requests are answered or fail. */
export function informer<T extends KubernetesObject>(
  kubeConfig: KubeConfig,
  timeoutMs: number,
  path: string,
  list: ListFunction<T>,
  fieldSelector?: string,
): ListWatch<T> {
  return new ListWatch<T>(path, new AnsweringWatch(kubeConfig, timeoutMs), list, false, undefined, fieldSelector);
}

export const httpStatusOf = (error: unknown): number | undefined => {
  const { code, statusCode } = (error ?? {}) as { code?: unknown; statusCode?: unknown };
  return typeof statusCode === "number" ? statusCode : typeof code === "number" ? code : undefined;
};

/**
 * Paginates an informer's initial list so that 2,000 namespaces do not arrive as one response; each
 * page must be answered within `timeoutMs`.
 */
export function paginated<T extends KubernetesObject>(
  what: string,
  timeoutMs: number,
  fetchPage: (continueToken: string | undefined) => Promise<KubernetesListObject<T>>,
): ListFunction<T> {
  const page = (token: string | undefined) => answered(fetchPage(token), what, timeoutMs);
  return async () => {
    const items: T[] = [];
    let token: string | undefined;
    let resourceVersion: string | undefined;
    let list: KubernetesListObject<T>;
    do {
      list = await page(token);
      items.push(...list.items);
      resourceVersion ??= list.metadata?.resourceVersion;
      token = list.metadata?._continue || undefined;
    } while (token !== undefined);
    return { ...list, items, metadata: { ...list.metadata, ...(resourceVersion === undefined ? {} : { resourceVersion }) } };
  };
}
