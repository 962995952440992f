/* The time loops of neuroalrnn.fast.ALRNNFunction, compiled (see neuroalrnn/native.py).

   At the sizes cognitive-task models use, a time step is one small matrix product of ~8 µs and
   an element-wise operation of well under 1 µs of arithmetic, but every torch operation called
   from Python costs 2-3 µs of dispatch. These loops do the same arithmetic as the torch loops in
   fast.py, on the same buffers, with the matrix product from the BLAS that torch itself uses
   (its Fortran `?gemm_`, passed in as a function pointer) and the element-wise work inline.

   Buffers are row-major (C order), time-major: block t of S is the (batch x s_width) matrix
   S_t = [padding, s_t, 1, psi_{t-1}, z_{t-1}] and block t of H the (batch x h_width) matrix
   [dL/dpsi_t, dL/dz_t, (dL/dy_{t-1})]; see fast.py for the layouts. A row-major product
   X (n x k) @ Y (k x m) is the column-major product Y^T X^T, hence the argument order below. */

#include <stddef.h>
#include <string.h>

typedef int blas_int; /* LP64: torch's MKL/OpenBLAS ?gemm_ takes 32-bit integers */

typedef void (*sgemm_fn)(const char *, const char *, const blas_int *, const blas_int *,
                         const blas_int *, const float *, const float *, const blas_int *,
                         const float *, const blas_int *, const float *, float *,
                         const blas_int *);
typedef void (*dgemm_fn)(const char *, const char *, const blas_int *, const blas_int *,
                         const blas_int *, const double *, const double *, const blas_int *,
                         const double *, const blas_int *, const double *, double *,
                         const blas_int *);

/* V (rows x n_units, row-major) with S_t[:, :rows] V = A * z + W Phi*(z) + C s + h (see
   fast._step_matrix, which builds the same matrix with torch operations):
     rows [0, inputs_col): 0;  [inputs_col, +K): C^T;  one: h;  [psi, +P): W's nonlinear columns^T;
     [z, +start): W's linear columns^T;  [z + start, rows): 0;  then diag A added from row z on.
   A (M), W (M x M), h (M), C (M x K) are contiguous. */
#define STEP_MATRIX(NAME, T)                                                                     \
    void NAME(T *V, long rows, long n_units, long n_inputs, long inputs_col, long one,            \
              long psi, long z, long start, const T *A, const T *W, const T *h, const T *C) {    \
        const long M = n_units, P = n_units - start;                                            \
        memset(V, 0, sizeof(T) * rows * M);                                                     \
        for (long k = 0; k < n_inputs; k++)                                                     \
            for (long m = 0; m < M; m++) V[(inputs_col + k) * M + m] = C[m * n_inputs + k];     \
        for (long m = 0; m < M; m++) V[one * M + m] = h[m];                                     \
        for (long m = 0; m < M; m++) {                                                          \
            const T *w = W + m * M;                                                             \
            for (long j = 0; j < P; j++) V[(psi + j) * M + m] = w[start + j];                   \
            for (long i = 0; i < start; i++) V[(z + i) * M + m] = w[i];                         \
        }                                                                                       \
        for (long i = 0; i < rows - z; i++) V[(z + i) * M + i] += A[i];                         \
    }

STEP_MATRIX(alrnn_step_matrix_f32, float)
STEP_MATRIX(alrnn_step_matrix_f64, double)

/* R for the backward product (see fast._back_matrix): r_rows x r_cols, row-major,
     folded (r_rows = M + O, r_cols = P + M):  [[W_nl, W D_lin + diag A], [0, B]]
     otherwise (r_rows = M, r_cols = M):       [W_nl, W_lin + diag A_lin]
   W D_lin: W with its nonlinear columns zeroed. B (O x M) is contiguous. */
#define BACK_MATRIX(NAME, T)                                                                     \
    void NAME(T *R, long r_rows, long r_cols, long n_units, long start, const T *A, const T *W,  \
              const T *B) {                                                                     \
        const long M = n_units, P = n_units - start;                                            \
        memset(R, 0, sizeof(T) * r_rows * r_cols);                                              \
        for (long m = 0; m < M; m++) {                                                          \
            const T *w = W + m * M;                                                             \
            T *r = R + m * r_cols;                                                              \
            for (long j = 0; j < P; j++) r[j] = w[start + j];                                   \
            for (long i = 0; i < start; i++) r[P + i] = w[i];                                   \
        }                                                                                       \
        for (long o = 0; o < r_rows - M; o++)                                                   \
            for (long i = 0; i < M; i++) R[(M + o) * r_cols + P + i] = B[o * M + i];            \
        for (long i = 0; i < r_cols - P; i++) R[i * r_cols + P + i] += A[i];                    \
    }

BACK_MATRIX(alrnn_back_matrix_f32, float)
BACK_MATRIX(alrnn_back_matrix_f64, double)

/* forward: for t in 0 .. n_steps-1
     z_{t+1} = S_t[:, :rows] V            (+ the noise already in z_{t+1} when `noise`)
     z_{t+1}[nl] += A_nl * z_t[nl]         when `separate`
     psi_{t+1} = phi(z_{t+1}[nl])          when n_nonlinear > 0
   with z at column `z_col` of S, its nonlinear units from column `z_col + start`, psi at `psi_col`;
   phi(x) = x > 0 ? x : slope * x. */
#define FORWARD(NAME, T, GEMM_T)                                                                 \
    void NAME(GEMM_T gemm, T *S, long n_steps, long batch, long s_width, long rows, const T *V, \
              long n_units, long z_col, long start, long n_nonlinear, long psi_col, int noise,  \
              int separate, const T *A_nl, T slope) {                                           \
        const blas_int m = (blas_int)n_units, n = (blas_int)batch, k = (blas_int)rows;         \
        const blas_int ld = (blas_int)s_width, ldv = (blas_int)n_units;                        \
        const T one = 1, beta = noise ? 1 : 0;                                                  \
        const long block = batch * s_width;                                                     \
        for (long t = 0; t < n_steps; t++) {                                                    \
            const T *X = S + t * block;                                                         \
            T *Y = S + (t + 1) * block;                                                         \
            gemm("N", "N", &m, &n, &k, &one, V, &ldv, X, &ld, &beta, Y + z_col, &ld);          \
            if (n_nonlinear == 0) continue;                                                     \
            for (long b = 0; b < batch; b++) {                                                  \
                T *z = Y + b * s_width + z_col + start;                                         \
                T *psi = Y + b * s_width + psi_col;                                             \
                if (separate) {                                                                 \
                    const T *before = X + b * s_width + z_col + start;                          \
                    for (long j = 0; j < n_nonlinear; j++) z[j] += A_nl[j] * before[j];         \
                }                                                                               \
                for (long j = 0; j < n_nonlinear; j++) psi[j] = z[j] > 0 ? z[j] : slope * z[j]; \
            }                                                                                   \
        }                                                                                       \
    }

FORWARD(alrnn_forward_f32, float, sgemm_fn)
FORWARD(alrnn_forward_f64, double, dgemm_fn)

/* backward: with last = n_steps - 1, for t = last .. 1
     dL/dz_t[nl] += phi'(z_t) * dL/dpsi_t       (t < last; phi' read off psi_t in S block t+1)
     H_t[:, y_col : y_col + O] = dL/dy_{t-1}      (when n_fill = O > 0: from grad_y, (batch, time, O)
                                                  with strides gy_batch, gy_time, gy_out; block 0's are zeroed)
     H_{t-1}[:, :r_cols] (+)= H_t[:, in_col : in_col + r_rows] R
     dL/dz_{t-1}[nl] += A_nl * dL/dz_t[nl]       when `separate`
   and then the first of these for t = 0 (when last > 0). dL/dpsi_t is H's first n_nonlinear
   columns, dL/dz_t's nonlinear units start at column n_nonlinear + start;
   phi'(z) = psi > 0 ? 1 : slope, as in neuroalrnn.models.ALRNN.phi. */
#define BACKWARD(NAME, T, GEMM_T)                                                                \
    static inline void NAME##_chain(T *h, const T *s, long batch, long h_width, long s_width,   \
                                    long nl_col, long n_nonlinear, long psi_col, T slope) {     \
        for (long b = 0; b < batch; b++) {                                                      \
            T *g = h + b * h_width;                                                             \
            const T *psi = s + b * s_width + psi_col;                                           \
            for (long j = 0; j < n_nonlinear; j++) g[nl_col + j] += (psi[j] > 0 ? 1 : slope) * g[j]; \
        }                                                                                       \
    }                                                                                           \
    void NAME(GEMM_T gemm, T *H, long n_steps, long batch, long h_width, const T *R, long r_rows, \
              long r_cols, long in_col, int accumulate, long n_nonlinear, long start, int separate, \
              const T *A_nl, const T *S, long s_width, long psi_col, T slope, const T *grad_y,   \
              long gy_batch, long gy_time, long gy_out, long y_col, long n_fill) {                           \
        const blas_int m = (blas_int)r_cols, n = (blas_int)batch, k = (blas_int)r_rows;        \
        const blas_int ld = (blas_int)h_width, ldr = (blas_int)r_cols;                         \
        const T one = 1, beta = accumulate ? 1 : 0;                                             \
        const long block = batch * h_width, s_block = batch * s_width;                          \
        const long nl_col = n_nonlinear + start, last = n_steps - 1;                            \
        for (long t = last; t > 0; t--) {                                                       \
            T *now = H + t * block, *before = H + (t - 1) * block;                              \
            if (n_nonlinear && t < last)                                                        \
                NAME##_chain(now, S + (t + 1) * s_block, batch, h_width, s_width, nl_col,       \
                             n_nonlinear, psi_col, slope);                                      \
            for (long b = 0; b < batch && n_fill; b++)                                          \
                for (long o = 0; o < n_fill; o++)                                               \
                    now[b * h_width + y_col + o] = grad_y[b * gy_batch + (t - 1) * gy_time + o * gy_out]; \
            gemm("N", "N", &m, &n, &k, &one, R, &ldr, now + in_col, &ld, &beta, before, &ld);  \
            if (n_nonlinear && separate)                                                        \
                for (long b = 0; b < batch; b++)                                                \
                    for (long j = 0; j < n_nonlinear; j++)                                      \
                        before[b * h_width + nl_col + j] += A_nl[j] * now[b * h_width + nl_col + j]; \
        }                                                                                       \
        for (long b = 0; b < batch && n_fill; b++)                                              \
            for (long o = 0; o < n_fill; o++) H[b * h_width + y_col + o] = 0;                   \
        if (n_nonlinear && last > 0)                                                            \
            NAME##_chain(H, S + s_block, batch, h_width, s_width, nl_col, n_nonlinear, psi_col, \
                         slope);                                                                \
    }

BACKWARD(alrnn_backward_f32, float, sgemm_fn)
BACKWARD(alrnn_backward_f64, double, dgemm_fn)

/* The whole forward pass in one call (fast.py's common path): V built into the scratch `V`,
   S's block rows filled (padding 0, inputs s_t read with strides in_b, in_t, in_k, the constant 1;
   z_0 and psi_0 from z0, or 0), the time loop, and the outputs Y (O x time*batch, row-major) =
   B z_t + b for t = 1 .. n_steps, one product. With `noise`, z_{t+1}'s columns of S already hold
   the noise. */
#define FORWARD_FULL(NAME, T, GEMM_T, STEP, LOOP)                                                \
    void NAME(GEMM_T gemm, T *S, long n_steps, long batch, long s_width, long rows, T *V,        \
              const T *A, const T *W, const T *h, const T *C, const T *inputs, long in_b,       \
              long in_t, long in_k, const T *z0, long n_units, long n_inputs, long inputs_col,  \
              long one, long psi, long z, long start, int noise, int separate, T slope,         \
              const T *B, const T *bias, long n_outputs, T *outputs) {                          \
        const long M = n_units, P = n_units - start, N = n_steps * batch;                      \
        STEP(V, rows, M, n_inputs, inputs_col, one, psi, z, start, A, W, h, C);                 \
        for (long t = 0; t < n_steps; t++)                                                      \
            for (long b = 0; b < batch; b++) {                                                  \
                T *row = S + (t * batch + b) * s_width;                                         \
                const T *s = inputs + b * in_b + t * in_t;                                      \
                for (long c = 0; c < inputs_col; c++) row[c] = 0;                               \
                for (long k = 0; k < n_inputs; k++) row[inputs_col + k] = s[k * in_k];          \
                row[one] = 1;                                                                   \
            }                                                                                   \
        for (long b = 0; b < batch; b++) {                                                      \
            T *row = S + b * s_width;                                                           \
            if (z0 == NULL) {                                                                   \
                for (long c = psi; c < z + M; c++) row[c] = 0;                                  \
                continue;                                                                       \
            }                                                                                   \
            for (long i = 0; i < M; i++) row[z + i] = z0[b * M + i];                            \
            for (long j = 0; j < P; j++) {                                                      \
                const T x = z0[b * M + start + j];                                              \
                row[psi + j] = x > 0 ? x : slope * x;                                           \
            }                                                                                   \
        }                                                                                       \
        LOOP(gemm, S, n_steps, batch, s_width, rows, V, M, z, start, P, psi, noise, separate,   \
             A + start, slope);                                                                 \
        const blas_int n = (blas_int)N, o = (blas_int)n_outputs, k = (blas_int)M;              \
        const blas_int ld = (blas_int)s_width, ldb = (blas_int)M;                              \
        const T unit = 1;                                                                       \
        for (long r = 0; r < n_outputs; r++)                                                    \
            for (long c = 0; c < N; c++) outputs[r * N + c] = bias[r];                          \
        gemm("T", "N", &n, &o, &k, &unit, S + batch * s_width + z, &ld, B, &ldb, &unit,         \
             outputs, &n);                                                                      \
    }

FORWARD_FULL(alrnn_forward_full_f32, float, sgemm_fn, alrnn_step_matrix_f32, alrnn_forward_f32)
FORWARD_FULL(alrnn_forward_full_f64, double, dgemm_fn, alrnn_step_matrix_f64, alrnn_forward_f64)

/* grad_W, grad_C and grad_h out of the weight-gradient products (row i: sum_t g_t[i] S_t, S's
   columns): W's linear columns from z's, its nonlinear ones from psi's, C from the inputs', h from
   the constant's. */
#define WEIGHT_GRADIENTS(NAME, T)                                                                \
    static void NAME(const T *products, long s_cols, long n_units, long start, long z, long psi, \
                     long inputs_col, long one, long n_inputs, T *grad_W, T *grad_h, T *grad_C) { \
        const long M = n_units, P = n_units - start;                                            \
        for (long i = 0; i < M; i++) {                                                          \
            const T *row = products + i * s_cols;                                               \
            for (long c = 0; c < start; c++) grad_W[i * M + c] = row[z + c];                    \
            for (long j = 0; j < P; j++) grad_W[i * M + start + j] = row[psi + j];              \
            for (long c = 0; c < n_inputs; c++) grad_C[i * n_inputs + c] = row[inputs_col + c]; \
            grad_h[i] = row[one];                                                               \
        }                                                                                       \
    }

WEIGHT_GRADIENTS(weight_gradients_f32, float)
WEIGHT_GRADIENTS(weight_gradients_f64, double)

/* The whole backward pass in one call for the training step's case (fast.py): a loss on the
   outputs only (dL/dy, (batch, time, O) with strides gy_b, gy_t, gy_o), no gradient for z0; here
   with A_nl * z_nl folded into the product. Builds R into the scratch `R`, starts H's last block
   from dL/dy_last B, runs the loop, takes the weight gradients as one product (`products`,
   g_cols x s_cols row-major: g_cols = M, or M + O with `readout`) and writes them out: grad_A (M),
   grad_W (M x M), grad_h (M), grad_C (M x K) and, with `readout`, grad_B (O x M) and grad_b (O). */
#define BACKWARD_FULL(NAME, T, GEMM_T, BACKM, LOOP, WEIGHTS)                                     \
    void NAME(GEMM_T gemm, T *H, long n_steps, long batch, long h_width, T *R, const T *A,      \
              const T *W, const T *B, long n_outputs, const T *S, long s_width, long s_cols,    \
              long inputs_col, long one, long psi, long z, long n_units, long n_inputs,         \
              long start, T slope, const T *grad_y, long gy_b, long gy_t, long gy_o,           \
              int readout, T *products, T *grad_A, T *grad_W, T *grad_h, T *grad_C, T *grad_B, \
              T *grad_b) {                                                                      \
        const long M = n_units, P = n_units - start, O = n_outputs, last = n_steps - 1;        \
        const long r_rows = M + O, r_cols = P + M, h_block = batch * h_width;                   \
        BACKM(R, r_rows, r_cols, M, start, A, W, B);                                            \
        for (long b = 0; b < batch; b++) {                                                      \
            T *row = H + last * h_block + b * h_width;                                          \
            const T *dy = grad_y + b * gy_b + last * gy_t;                                      \
            for (long j = 0; j < P; j++) row[j] = 0;                                            \
            for (long i = 0; i < M; i++) {                                                      \
                T sum = 0;                                                                      \
                for (long o = 0; o < O; o++) sum += dy[o * gy_o] * B[o * M + i];                \
                row[P + i] = sum;                                                               \
            }                                                                                   \
        }                                                                                       \
        LOOP(gemm, H, n_steps, batch, h_width, R, r_rows, r_cols, P, 0, P, start, 0, NULL, S,   \
             s_width, psi, slope, grad_y, gy_b, gy_t, gy_o, P + M, O);                          \
        const long g_cols = M + (readout ? O : 0);                                              \
        const blas_int m = (blas_int)s_cols, n = (blas_int)g_cols, k = (blas_int)(n_steps * batch); \
        const blas_int lds = (blas_int)s_width, ldh = (blas_int)h_width;                       \
        const T unit = 1, zero = 0;                                                             \
        gemm("N", "T", &m, &n, &k, &unit, S, &lds, H + P, &ldh, &zero, products, &m);          \
        WEIGHTS(products, s_cols, M, start, z, psi, inputs_col, one, n_inputs, grad_W, grad_h, grad_C); \
        for (long i = 0; i < M; i++) grad_A[i] = products[i * s_cols + z + i];                  \
        if (!readout) return;                                                                   \
        /* the readout's gradient for steps 1 .. T-1 came with the product; add step T's */     \
        const T *z_last = S + n_steps * batch * s_width + z;                                    \
        for (long o = 0; o < O; o++) {                                                          \
            const T *row = products + (M + o) * s_cols;                                         \
            T sum = 0;                                                                          \
            for (long i = 0; i < M; i++) grad_B[o * M + i] = row[z + i];                        \
            for (long b = 0; b < batch; b++) {                                                  \
                const T dy = grad_y[b * gy_b + last * gy_t + o * gy_o];                         \
                sum += dy;                                                                      \
                for (long i = 0; i < M; i++) grad_B[o * M + i] += dy * z_last[b * s_width + i]; \
            }                                                                                   \
            grad_b[o] = row[one] + sum;                                                         \
        }                                                                                       \
    }

BACKWARD_FULL(alrnn_backward_full_f32, float, sgemm_fn, alrnn_back_matrix_f32, alrnn_backward_f32,
              weight_gradients_f32)
BACKWARD_FULL(alrnn_backward_full_f64, double, dgemm_fn, alrnn_back_matrix_f64, alrnn_backward_f64,
              weight_gradients_f64)

/* The same for the unfolded layout (P > M / FOLD_RATIO in fast.py): R = [W_nl, W_lin + diag A_lin]
   (M x M), H = [dL/dpsi_t, dL/dz_t] with dL/dz_t started from dL/dy_t B for every t (through the
   time-major copy `dy` of dL/dy, time*batch x O, scratch), the loop adding onto it and taking
   A_nl * dL/dz_nl back a step; then products (M x s_cols, S's columns before z_nl), grad_A of the
   nonlinear units as sum over rows of z_nl * dL/dz_nl, and the readout's gradients from dy. */
#define BACKWARD_FULL_SEPARATE(NAME, T, GEMM_T, BACKM, LOOP, WEIGHTS)                            \
    void NAME(GEMM_T gemm, T *H, long n_steps, long batch, long h_width, T *R, const T *A,      \
              const T *W, const T *B, long n_outputs, const T *S, long s_width, long s_cols,    \
              long inputs_col, long one, long psi, long z, long n_units, long n_inputs,         \
              long start, T slope, const T *grad_y, long gy_b, long gy_t, long gy_o,           \
              int readout, T *dy, T *products, T *grad_A, T *grad_W, T *grad_h, T *grad_C,     \
              T *grad_B, T *grad_b) {                                                           \
        const long M = n_units, P = n_units - start, O = n_outputs, N = n_steps * batch;       \
        BACKM(R, M, M, M, start, A, W, B);                                                      \
        for (long t = 0; t < n_steps; t++)                                                      \
            for (long b = 0; b < batch; b++) {                                                  \
                T *row = dy + (t * batch + b) * O;                                              \
                for (long o = 0; o < O; o++) row[o] = grad_y[b * gy_b + t * gy_t + o * gy_o];   \
                T *h = H + (t * batch + b) * h_width;                                           \
                for (long j = 0; j < P; j++) h[j] = 0;                                          \
            }                                                                                   \
        const T unit = 1, zero = 0;                                                             \
        {                                                                                       \
            const blas_int m = (blas_int)M, n = (blas_int)N, k = (blas_int)O;                  \
            const blas_int ldh = (blas_int)h_width;                                            \
            gemm("N", "N", &m, &n, &k, &unit, B, &m, dy, &k, &zero, H + P, &ldh);              \
        }                                                                                       \
        LOOP(gemm, H, n_steps, batch, h_width, R, M, M, P, 1, P, start, 1, A + start, S,        \
             s_width, psi, slope, NULL, 0, 0, 0, 0, 0);                                         \
        {                                                                                       \
            const blas_int m = (blas_int)s_cols, n = (blas_int)M, k = (blas_int)N;             \
            const blas_int lds = (blas_int)s_width, ldh = (blas_int)h_width;                   \
            gemm("N", "T", &m, &n, &k, &unit, S, &lds, H + P, &ldh, &zero, products, &m);      \
        }                                                                                       \
        WEIGHTS(products, s_cols, M, start, z, psi, inputs_col, one, n_inputs, grad_W, grad_h, grad_C); \
        for (long i = 0; i < start; i++) grad_A[i] = products[i * s_cols + z + i];              \
        for (long j = 0; j < P; j++) grad_A[start + j] = 0;                                     \
        for (long r = 0; r < N; r++) {                                                          \
            const T *s = S + r * s_width + z + start, *g = H + r * h_width + P + start;         \
            for (long j = 0; j < P; j++) grad_A[start + j] += s[j] * g[j];                      \
        }                                                                                       \
        if (!readout) return;                                                                   \
        {                                                                                       \
            const blas_int m = (blas_int)M, n = (blas_int)O, k = (blas_int)N;                  \
            const blas_int lds = (blas_int)s_width, ldy = (blas_int)O;                         \
            gemm("N", "T", &m, &n, &k, &unit, S + batch * s_width + z, &lds, dy, &ldy, &zero,   \
                 grad_B, &m);                                                                   \
        }                                                                                       \
        for (long o = 0; o < O; o++) grad_b[o] = 0;                                             \
        for (long r = 0; r < N; r++)                                                            \
            for (long o = 0; o < O; o++) grad_b[o] += dy[r * O + o];                            \
    }

BACKWARD_FULL_SEPARATE(alrnn_backward_full_separate_f32, float, sgemm_fn, alrnn_back_matrix_f32,
                       alrnn_backward_f32, weight_gradients_f32)
BACKWARD_FULL_SEPARATE(alrnn_backward_full_separate_f64, double, dgemm_fn, alrnn_back_matrix_f64,
                       alrnn_backward_f64, weight_gradients_f64)
