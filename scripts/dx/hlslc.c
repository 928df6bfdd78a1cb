/* Compiles HLSL compute shaders with Microsoft's compilers as wgpu-hal's DX12 backend calls
 * them (wgpu-hal 30, src/dx12/shader_compilation.rs, without the debug flags):
 *   FXC: D3DCompile(..., "cs_5_1", D3DCOMPILE_ENABLE_STRICTNESS)
 *   DXC: IDxcCompiler3::Compile with -E <entry> -T cs_6_0 -HV 2018 -no-warnings -Ges
 * Built with x86_64-w64-mingw32-gcc, run under wine next to d3dcompiler_47.dll and
 * dxcompiler.dll. Reads jobs from a file, one per line: "fxc|dxc <hlsl file> <entry>", and
 * prints "ok|FAIL <compiler> <file> <ms>" with the compiler's messages; exits 1 if any failed. */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef HRESULT(WINAPI *D3DCompileFn)(const void *, SIZE_T, const char *, const void *, void *, const char *,
                                      const char *, UINT, UINT, void **, void **);
typedef HRESULT(WINAPI *DxcCreateInstanceFn)(REFCLSID, REFIID, void **);

/* Minimal COM views: a vtable of function pointers, IUnknown's three first. */
typedef struct { void **vtbl; } Com;
#define VCALL(obj, idx, type) ((type)(((Com *)(obj))->vtbl[idx]))
typedef struct { const void *ptr; SIZE_T size; UINT encoding; } DxcBuffer;

static const GUID CLSID_DxcCompiler = {0x73e22d93, 0xe6ce, 0x47f3, {0xb5, 0xbf, 0xf0, 0x66, 0x4f, 0x39, 0xc1, 0xb0}};
static const GUID IID_IDxcCompiler3 = {0x228b4687, 0x5a6a, 0x4730, {0x90, 0x0c, 0x97, 0x02, 0xb2, 0x20, 0x3f, 0x54}};
static const GUID IID_IDxcBlobUtf8 = {0x3da636c9, 0xba71, 0x4024, {0xa3, 0x01, 0x30, 0xcb, 0xf1, 0x25, 0x30, 0x5b}};
static const GUID IID_IDxcResult = {0x58346cda, 0xdde7, 0x4497, {0x94, 0x61, 0x6f, 0x87, 0xaf, 0x5e, 0x06, 0x59}};

static char *read_file(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*len + 1);
    fread(buf, 1, *len, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

/* IUnknown: 0 QI, 1 AddRef, 2 Release; ID3DBlob / IDxcBlob: 3 GetBufferPointer, 4 GetBufferSize */
static void print_blob(void *blob) {
    if (!blob) return;
    const char *p = VCALL(blob, 3, void *(WINAPI *)(void *))(blob);
    SIZE_T n = VCALL(blob, 4, SIZE_T(WINAPI *)(void *))(blob);
    if (p && n) fwrite(p, 1, n, stdout);
    printf("\n");
    VCALL(blob, 2, ULONG(WINAPI *)(void *))(blob);
}

static int fxc(D3DCompileFn compile, const char *src, long len, const char *name, const char *entry) {
    void *code = NULL, *errors = NULL;
    HRESULT hr = compile(src, len, name, NULL, NULL, entry, "cs_5_1", 1u << 11 /* ENABLE_STRICTNESS */, 0, &code, &errors);
    if (FAILED(hr) || !code) {
        print_blob(errors);
        return 0;
    }
    VCALL(code, 2, ULONG(WINAPI *)(void *))(code);
    if (errors) VCALL(errors, 2, ULONG(WINAPI *)(void *))(errors);
    return 1;
}

static int dxc(Com *compiler, const char *src, long len, const char *entry) {
    wchar_t wentry[256];
    MultiByteToWideChar(CP_UTF8, 0, entry, -1, wentry, 256);
    LPCWSTR args[] = {L"-E", wentry, L"-T", L"cs_6_0", L"-HV", L"2018", L"-no-warnings", L"-Ges"};
    DxcBuffer buf = {src, (SIZE_T)len, 65001 /* DXC_CP_UTF8 */};
    void *result = NULL;
    typedef HRESULT(WINAPI * CompileFn)(void *, const DxcBuffer *, LPCWSTR *, UINT, void *, REFIID, void **);
    HRESULT hr = VCALL(compiler, 3, CompileFn)(compiler, &buf, args, 8, NULL, &IID_IDxcResult, &result);
    if (FAILED(hr) || !result) {
        printf("IDxcCompiler3::Compile returned 0x%08lx\n", (unsigned long)hr);
        return 0;
    }
    /* IDxcOperationResult: 3 GetStatus, 4 GetResult, 5 GetErrorBuffer */
    HRESULT status = E_FAIL;
    VCALL(result, 3, HRESULT(WINAPI *)(void *, HRESULT *))(result, &status);
    int ok = SUCCEEDED(status);
    if (!ok) {
        /* IDxcResult: 7 GetOutput(DXC_OUT_ERRORS = 2, IID_IDxcBlobUtf8, ...); GetErrorBuffer
         * (5) comes back empty from this DLL */
        void *errors = NULL;
        VCALL(result, 7, HRESULT(WINAPI *)(void *, int, REFIID, void **, void **))(result, 2, &IID_IDxcBlobUtf8, &errors, NULL);
        print_blob(errors);
    }
    VCALL(result, 2, ULONG(WINAPI *)(void *))(result);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: hlslc <jobs file>\n");
        return 2;
    }
    HMODULE d3d = LoadLibraryA("d3dcompiler_47.dll");
    HMODULE dxcm = LoadLibraryA("dxcompiler.dll");
    D3DCompileFn compile = d3d ? (D3DCompileFn)GetProcAddress(d3d, "D3DCompile") : NULL;
    DxcCreateInstanceFn create = dxcm ? (DxcCreateInstanceFn)GetProcAddress(dxcm, "DxcCreateInstance") : NULL;
    Com *compiler = NULL;
    if (create) create(&CLSID_DxcCompiler, &IID_IDxcCompiler3, (void **)&compiler);
    FILE *jobs = fopen(argv[1], "r");
    if (!jobs) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 2;
    }
    char which[16], path[1024], entry[256];
    int failed = 0, total = 0;
    while (fscanf(jobs, "%15s %1023s %255s", which, path, entry) == 3) {
        long len = 0;
        char *src = read_file(path, &len);
        LARGE_INTEGER t0, t1, freq;
        QueryPerformanceFrequency(&freq);
        QueryPerformanceCounter(&t0);
        int ok = 0;
        if (!src) printf("cannot read %s\n", path);
        else if (!strcmp(which, "fxc")) ok = compile ? fxc(compile, src, len, path, entry) : (printf("no D3DCompile in d3dcompiler_47.dll\n"), 0);
        else if (!strcmp(which, "dxc")) ok = compiler ? dxc(compiler, src, len, entry) : (printf("no IDxcCompiler3 from dxcompiler.dll\n"), 0);
        else printf("unknown compiler %s\n", which);
        QueryPerformanceCounter(&t1);
        printf("%s %s %s %.0f ms\n", ok ? "ok" : "FAIL", which, path, 1000.0 * (t1.QuadPart - t0.QuadPart) / freq.QuadPart);
        fflush(stdout);
        failed += !ok;
        total++;
        free(src);
    }
    printf("%d of %d compiled\n", total - failed, total);
    return failed || total == 0 ? 1 : 0;
}
