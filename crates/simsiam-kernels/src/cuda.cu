// simsiam-rs CUDA kernels (f32), compiled at run time with NVRTC by kernels/cuda.rs.
// Check with: nvcc --ptx -arch=sm_90 -o /dev/null crates/simsiam-models/src/kernels/cuda.cu

#define THREADS 256

// Index in the plane of the first maximum of output cell (oy, ox), as the CPU kernel.
__device__ int pool_argmax(const float* p, int h, int w, int k, int s, int pad, int oy, int ox) {
    int y0 = max(oy * s - pad, 0), x0 = max(ox * s - pad, 0);
    int y1 = min(oy * s + k - pad, h), x1 = min(ox * s + k - pad, w);
    int best = y0 * w + x0;
    for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x)
            if (p[y * w + x] > p[best]) best = y * w + x;
    return best;
}

extern "C" __global__ void max_pool_fwd(const float* x, float* y, long long planes, int h, int w,
                                        int oh, int ow, int k, int s, int pad) {
    long long total = planes * oh * ow;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int ox = (int)(i % ow), oy = (int)((i / ow) % oh);
        const float* p = x + (i / ((long long)oh * ow)) * h * w;
        y[i] = p[pool_argmax(p, h, w, k, s, pad, oy, ox)];
    }
}

// A gather, not a scatter: each input cell sums the gradients of the windows whose first
// maximum it is, in row-major window order (the CPU kernel's order), without atomics.
extern "C" __global__ void max_pool_bwd(const float* x, const float* dy, float* dx, long long planes,
                                        int h, int w, int oh, int ow, int k, int s, int pad) {
    long long total = planes * h * w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int ix = (int)(i % w), iy = (int)((i / w) % h);
        long long plane = i / ((long long)h * w);
        const float* p = x + plane * h * w;
        const float* g = dy + plane * oh * ow;
        int me = iy * w + ix;
        // Windows containing row iy: oy * s - pad <= iy < oy * s - pad + k.
        int oy0 = max((iy + pad - k + s) / s, 0), oy1 = min((iy + pad) / s, oh - 1);
        int ox0 = max((ix + pad - k + s) / s, 0), ox1 = min((ix + pad) / s, ow - 1);
        float acc = 0.0f;
        for (int oy = oy0; oy <= oy1; ++oy)
            for (int ox = ox0; ox <= ox1; ++ox)
                if (pool_argmax(p, h, w, k, s, pad, oy, ox) == me) acc += g[oy * ow + ox];
        dx[i] = acc;
    }
}

// Sum over the block in a fixed tree; every thread gets the result.
__device__ double block_sum(double v, double* shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
        __syncthreads();
    }
    double total = shared[0];
    __syncthreads();
    return total;
}

// The element j of channel ch for the i-th of its n * s values, x being [n, c, s].
__device__ long long bn_index(long long i, int c, long long s, int ch) {
    return (i / s) * c * s + ch * s + i % s;
}

// One block per channel. st (6c doubles): mean, var, invstd, mean_t, scale, shift, where
// mean_t and scale are rounded to f32 as the CPU kernel does.
extern "C" __global__ void bn_stats(const float* x, const float* w, const float* b, double* st,
                                    int n, int c, long long s, double eps, int affine) {
    __shared__ double shared[THREADS];
    int ch = blockIdx.x;
    long long count = (long long)n * s;
    double acc = 0.0;
    for (long long i = threadIdx.x; i < count; i += THREADS) acc += x[bn_index(i, c, s, ch)];
    double mean = block_sum(acc, shared) / count;
    float m = (float)mean;
    // Deviations from the f32 mean; e1 corrects for its rounding.
    double e1 = 0.0, e2 = 0.0;
    for (long long i = threadIdx.x; i < count; i += THREADS) {
        double e = (double)__fadd_rn(x[bn_index(i, c, s, ch)], -m);
        e1 += e;
        e2 += e * e;
    }
    e1 = block_sum(e1, shared) / count;
    e2 = block_sum(e2, shared) / count;
    if (threadIdx.x == 0) {
        double var = fmax(e2 - e1 * e1, 0.0);
        double invstd = 1.0 / sqrt(var + eps);
        st[ch] = mean;
        st[c + ch] = var;
        st[2 * c + ch] = invstd;
        st[3 * c + ch] = (double)m;
        st[4 * c + ch] = affine ? (double)(float)((double)w[ch] * invstd) : (double)(float)invstd;
        st[5 * c + ch] = affine ? (double)b[ch] : 0.0;
    }
}

__device__ float bn_affine(float x, const double* st, int c, int ch) {
    float m = (float)st[3 * c + ch], a = (float)st[4 * c + ch], b = (float)st[5 * c + ch];
    return __fadd_rn(__fmul_rn(__fadd_rn(x, -m), a), b);
}

extern "C" __global__ void bn_apply(const float* x, float* y, const double* st, long long total,
                                    int c, long long s, int relu) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int ch = (int)((i / s) % c);
        float z = bn_affine(x[i], st, c, ch);
        y[i] = relu && !(z > 0.0f) ? 0.0f : z;
    }
}

// The gradient reaching the affine output: dy, masked by the ReLU.
__device__ float bn_masked(float x, float g, const double* st, int c, int ch, int relu) {
    return relu && bn_affine(x, st, c, ch) <= 0.0f ? 0.0f : g;
}

// One block per channel: sums of g and g (x - mean), then k (2c doubles: k1, k2) for bn_dx,
// and the weight and bias gradients at out[len + ch], out[len + c + ch].
extern "C" __global__ void bn_bwd_sums(const float* x, const float* dy, const double* st, double* k,
                                       float* out, long long len, int n, int c, long long s,
                                       int relu) {
    __shared__ double shared[THREADS];
    int ch = blockIdx.x;
    long long count = (long long)n * s;
    float m = (float)st[3 * c + ch];
    double sg = 0.0, sgx = 0.0;
    for (long long i = threadIdx.x; i < count; i += THREADS) {
        long long j = bn_index(i, c, s, ch);
        float g = bn_masked(x[j], dy[j], st, c, ch, relu);
        sg += g;
        sgx += (double)g * (double)__fadd_rn(x[j], -m);
    }
    sg = block_sum(sg, shared);
    sgx = block_sum(sgx, shared);
    if (threadIdx.x == 0) {
        sgx += (st[3 * c + ch] - st[ch]) * sg;
        double invstd = st[2 * c + ch];
        k[ch] = sg / count;
        k[c + ch] = sgx * invstd * invstd / count;
        out[len + ch] = (float)(sgx * invstd);
        out[len + c + ch] = (float)sg;
    }
}

// dx = scale (g - k1 - (x - mean) k2).
extern "C" __global__ void bn_bwd_dx(const float* x, const float* dy, const double* st,
                                     const double* k, float* dx, long long total, int c,
                                     long long s, int relu) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int ch = (int)((i / s) % c);
        float g = bn_masked(x[i], dy[i], st, c, ch, relu);
        float m = (float)st[3 * c + ch], a = (float)st[4 * c + ch];
        float k1 = (float)k[ch], k2 = (float)k[c + ch];
        dx[i] = __fmul_rn(a, __fadd_rn(__fadd_rn(g, -k1), -__fmul_rn(__fadd_rn(x[i], -m), k2)));
    }
}
